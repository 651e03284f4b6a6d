"""The frame every page shares: navigation bar with the Services menu, the service-down banner, cards, badges,
tabs built when first opened.

A page builds its content and hands it to `page_template`, which places the assistant's chat panel (ui.chat_panel)
in the sidebar.
"""

from __future__ import annotations

import functools
import html
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import panel as pn

from coelho.settings import Settings
from ui.live import LiveData

log = logging.getLogger("coelho.ui")

ACCENT = "#2563eb"
MUTED = "#6b7280"  # secondary text
CARD_CSS = """
:host {
  background: #ffffff; border: 1px solid #e5e7eb; border-radius: 12px;
  box-shadow: 0 1px 2px rgba(16, 24, 40, .05); padding: 6px 10px;
}
"""
FIELD_ERROR_CSS = ":host { color: #b42318; font-size: 12px; line-height: 1.3; }"

NAV_CSS = """
nav { display: flex; align-items: center; gap: 4px; font-size: 14px; font-family: inherit; }
nav a.page { color: #e5edff; text-decoration: none; padding: 6px 12px; border-radius: 8px; white-space: nowrap; }
nav a.page:hover { background: rgba(255,255,255,.14); color: #fff; }
nav a.page.active { background: rgba(255,255,255,.22); color: #fff; font-weight: 600; }
details { position: relative; }
summary { list-style: none; cursor: pointer; color: #e5edff; padding: 6px 12px; border-radius: 8px; }
summary::-webkit-details-marker { display: none; }
summary:hover, details[open] summary { background: rgba(255,255,255,.14); color: #fff; }
.menu { position: absolute; right: 0; top: 34px; background: #fff; border: 1px solid #e5e7eb; border-radius: 10px;
        box-shadow: 0 10px 30px rgba(0,0,0,.18); padding: 6px; min-width: 380px; z-index: 1000; }
.menu a { display: flex; align-items: center; gap: 10px; color: #111827; text-decoration: none;
          padding: 7px 10px; border-radius: 6px; }
.menu a span.name { flex: 1; white-space: nowrap; }
.menu .logo { width: 18px; height: 18px; flex: none; display: inline-flex; align-items: center; justify-content: center; }
.menu .logo svg { width: 18px; height: 18px; }
.menu .logo.text { width: auto; min-width: 18px; height: 16px; padding: 0 3px; border-radius: 4px; font-size: 9px;
                   font-weight: 700; color: #fff; background: #475569; }
.menu a:hover { background: #eff4ff; }
.menu small { color: #6b7280; }
@media (max-width: 1200px) { nav { gap: 0; font-size: 13px; } nav a.page, summary { padding: 6px 7px; } }
"""


def card(*objects: Any, title: str | None = None, **kwargs: Any) -> pn.Column:
    """A white rounded card, optionally with a small heading."""
    items = list(objects)
    if title:
        items.insert(
            0,
            pn.pane.HTML(
                f"<h3 style='margin:4px 0 2px 0;font-size:15px;color:#111827'>{html.escape(title)}</h3>", margin=(0, 10)
            ),
        )
    kwargs.setdefault("sizing_mode", "stretch_width")
    kwargs.setdefault("margin", (6, 6))
    return pn.Column(*items, stylesheets=[CARD_CSS], **kwargs)


def flow(*items: Any, gap: str = "0px", **kwargs: Any) -> pn.FlexBox:
    """A row that wraps: its items sit side by side while they fit and stack when the window is narrow.

    Give each item its flex with `grow(item, basis)` (or a fixed width): no item is ever pushed past the right
    edge of the window, which a `pn.Row` of fixed-width items does at laptop widths.
    """
    kwargs.setdefault("sizing_mode", "stretch_width")
    kwargs.setdefault("margin", 0)
    kwargs.setdefault("align_items", "flex-start")
    return pn.FlexBox(*items, flex_wrap="wrap", gap=gap, **kwargs)


def grow(item: Any, basis: int, max_width: int | None = None) -> Any:
    """`item` as a flex item that starts at `basis` px, grows into free room and shrinks to the window's width."""
    styles = dict(getattr(item, "styles", None) or {})
    styles.update({"flex": f"1 1 {basis}px", "min-width": f"min({basis}px, 100%)"})
    if max_width is not None:
        styles["max-width"] = f"{max_width}px"
    item.styles = styles
    return item


def lazy(build: Callable[[], Any]) -> Any:
    """A tab body built the first time it is shown (inside pn.Tabs(dynamic=True)), not with the page (ADR 0073)."""

    def view() -> Any:  # ParamFunction takes functions, not bound methods
        return build()

    return pn.param.ParamFunction(view, lazy=True, sizing_mode="stretch_width")


def badge(text: str, color: str, solid: bool = True) -> str:
    style = (
        f"background:{color};color:#fff" if solid else f"background:{color}1a;color:{color};border:1px solid {color}55"
    )
    return f"<span style='{style};padding:2px 9px;border-radius:999px;font-size:12px;font-weight:700;letter-spacing:.03em'>{html.escape(text)}</span>"


# --- navigation ----------------------------------------------------------------------------------------
LOGOS_DIR = Path(__file__).parent / "data" / "logos"  # Simple Icons (CC0), see ui/data/README.md
# label -> (logo file in LOGOS_DIR and its brand colour) or (None, a short text badge)
SERVICE_LOGOS: dict[str, tuple[str | None, str]] = {
    "MLflow": ("mlflow.svg", "#0194E2"),
    "Prometheus": ("prometheus.svg", "#E6522C"),
    "Grafana": ("grafana.svg", "#F46800"),
    "S3 file browser": (None, "S3"),
    "S3 (SeaweedFS)": (None, "S3"),
    "Broker ingress": ("knative.svg", "#0865AD"),
    "Router metrics": ("prometheus.svg", "#E6522C"),
    "learn-one health": ("knative.svg", "#0865AD"),
    "predict-one health": ("knative.svg", "#0865AD"),
    "checkpoint health": ("knative.svg", "#0865AD"),
    "chat health": ("knative.svg", "#0865AD"),
    "SQL tables": ("duckdb.svg", "#A38B00"),
}


@functools.cache
def logo_html(label: str) -> str:
    """A service's logo as inline SVG in its brand colour, or a small text badge when there is none.

    >>> "<svg" in logo_html("MLflow") and "#0194E2" in logo_html("MLflow")
    True
    >>> logo_html("S3 (SeaweedFS)")
    "<span class='logo text' aria-hidden='true'>S3</span>"
    """
    file, value = SERVICE_LOGOS.get(label, (None, label[:2].upper()))
    if file is None:
        return f"<span class='logo text' aria-hidden='true'>{html.escape(value)}</span>"
    svg = (LOGOS_DIR / file).read_text(encoding="utf-8")
    svg = svg.replace("<svg ", f"<svg fill='{value}' aria-hidden='true' ", 1)
    return f"<span class='logo'>{svg}</span>"


def grafana_url() -> str | None:
    """Grafana's address when one serves the platform's dashboards (COELHO_GRAFANA_URL; none runs locally)."""
    return os.environ.get("COELHO_GRAFANA_URL") or None


def service_links(settings: Settings) -> list[tuple[str, str, str]]:
    """(label, url, note) of the services a user may open in a browser."""
    s = settings
    grafana = grafana_url()
    return [
        ("MLflow", s.url("mlflow"), "models, runs, registry"),
        ("Prometheus", s.url("prometheus") + "/graph", "metrics and alerts"),
        *([("Grafana", grafana, "dashboards")] if grafana else []),
        ("S3 file browser", s.url("seaweed_filer") + "/buckets/", "browse the buckets (SeaweedFS filer)"),
        ("S3 (SeaweedFS)", s.url("s3"), "buckets, S3 API"),
        ("Broker ingress", s.url("broker"), "POST CloudEvents here"),
        ("Router metrics", s.url("router_metrics") + "/metrics", "events in/out, retries"),
        ("learn-one health", s.url("learn") + "/health/readiness", "function"),
        ("predict-one health", s.url("predict") + "/health/readiness", "function"),
        ("checkpoint health", s.url("checkpoint") + "/health/readiness", "function"),
        ("chat health", s.url("chat") + "/health/readiness", "function"),
        ("SQL tables", s.url("sql") + "/tables", "the lake's Delta tables (POST /sql)"),
    ]


def nav_html(active: str, pages: list[tuple[str, str]], settings: Settings) -> str:
    links = "".join(
        f"<a class='page{' active' if route == active else ''}' href='{route}'>{html.escape(title)}</a>"
        for route, title in pages
    )
    services = "".join(
        f"<a href='{html.escape(url)}' target='_blank' rel='noopener'>{logo_html(label)}"
        f"<span class='name'>{html.escape(label)}</span><small>{html.escape(note)}</small></a>"
        for label, url, note in service_links(settings)
    )
    return f"<nav>{links}<details><summary>Services ▾</summary><div class='menu'>{services}</div></details></nav>"


# --- the banner ----------------------------------------------------------------------------------------
class ServiceBanner:
    """A red banner naming every expected service that is down; hidden when all are healthy."""

    def __init__(self, live: LiveData) -> None:
        self.live = live
        # Styled inline (not pn.pane.Alert): the banner must look alarming even if a stylesheet loads late.
        self.pane = pn.pane.HTML(
            "", visible=False, sizing_mode="stretch_width", margin=(4, 6), css_classes=["service-banner"]
        )
        self.refresh()

    def refresh(self) -> None:
        down = self.live.down_services()
        if not down:
            self.pane.visible = False
            return
        names = ", ".join(f"<b>{html.escape(s.label)}</b>" for s in down)
        verb = "is" if len(down) == 1 else "are"
        self.pane.object = (
            "<div role='alert' style='background:#fdecea;border:1px solid #f5c2c0;border-left:5px solid #d1382f;"
            "color:#7a1c17;border-radius:10px;padding:12px 16px;font-size:14px'>"
            f"⚠ Service down: {names} {verb} not responding. The page keeps working where it can; "
            "values may be stale until it is back.</div>"
        )
        self.pane.visible = True


# --- the template --------------------------------------------------------------------------------------
def page_template(
    title: str,
    active: str,
    main: list[Any],
    settings: Settings,
    pages: list[tuple[str, str]],
    page_context: Callable[[], dict[str, Any]] | None = None,
) -> pn.template.FastListTemplate:
    """The shared frame: header navigation, banner + `main`, and the chat panel in the sidebar."""
    live = LiveData.get(settings)
    banner = ServiceBanner(live)
    nav = pn.pane.HTML(
        nav_html(active, pages, settings),
        stylesheets=[NAV_CSS],
        margin=(0, 10),
        sizing_mode="stretch_width",  # the header's room, whatever the window's width (a fixed width overflowed)
        height=40,
    )
    sidebar: list[Any] = []

    def chat_view() -> Any:
        try:
            from ui.chat_panel import chat_panel

            return chat_panel(settings, page=active.strip("/") or "home", context=page_context or dict)
        except Exception:  # the page still works without its assistant; the log says why
            log.exception("the chat panel failed to build")
            return pn.pane.HTML("")

    # Built and sent right after the page is shown (defer_load), not as part of it: the chat interface is
    # ~0.2-0.5 s of a page build on this machine and nobody types in the first second (ADR 0073).
    sidebar.append(pn.panel(chat_view, defer_load=True, sizing_mode="stretch_width"))
    template = pn.template.FastListTemplate(
        title="COELHO RealTime",
        header=[nav],
        main=[banner.pane, *main],
        sidebar=sidebar,
        collapsed_sidebar=not sidebar,
        accent_base_color=ACCENT,
        header_background="#1e3a8a",
        main_layout=None,
        theme_toggle=False,
        background_color="#f4f6fb",
        font="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
        meta_description=f"COELHO RealTime — {title}",
        sidebar_width=380,
    )
    pn.state.curdoc.title = f"{title} · COELHO RealTime"  # type: ignore[union-attr]
    pn.state.add_periodic_callback(banner.refresh, period=2000)
    return template
