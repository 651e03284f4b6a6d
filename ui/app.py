"""The Panel dashboard: one URL per page, all sharing the frame in ui.layout.

`PAGES` is the one list of pages: the navigation bar, the routes and the browser tests read it. Each page's module
(ui.pages.*, ui.observability) is imported when a page is first built; the chat panel (ui.chat_panel) is placed in
every page's sidebar by ui.layout.page_template.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import panel as pn

from coelho.settings import Settings
from ui.layout import page_template
from ui.live import LiveData

log = logging.getLogger("coelho.ui")

Builder = Callable[[Settings], tuple[list[Any], Callable[[], dict[str, Any]] | None]]


@dataclass(frozen=True)
class Page:
    route: str
    title: str
    build: Builder


def _home(settings: Settings) -> tuple[list[Any], Any]:
    from ui.pages import home

    return home.build(settings)


def _tfd(settings: Settings) -> tuple[list[Any], Any]:
    from ui.pages import tfd

    return tfd.build(settings)


def _eta(settings: Settings) -> tuple[list[Any], Any]:
    from ui.pages import eta

    return eta.build(settings)


def _ecci(settings: Settings) -> tuple[list[Any], Any]:
    from ui.pages import ecci

    return ecci.build(settings)


def _sql(settings: Settings) -> tuple[list[Any], Any]:
    from ui.pages import sql

    return sql.build(settings)


def _batch(settings: Settings) -> tuple[list[Any], Any]:
    from ui.pages import batch

    return batch.build(settings)


def _observability(settings: Settings) -> tuple[list[Any], Any]:
    from ui import observability

    layout, context = observability.page_and_context(settings)
    return [layout], context


PAGES: list[Page] = [
    Page("/", "Home", _home),
    Page("/tfd", "Fraud detection", _tfd),
    Page("/eta", "ETA", _eta),
    Page("/ecci", "E-commerce", _ecci),
    Page("/sql", "SQL", _sql),
    Page("/batch", "Batch", _batch),
    Page("/observability", "Observability", _observability),
]


def _error_view(title: str) -> list[Any]:
    return [
        pn.pane.Alert(
            f"The {title} page could not be built. The error is in the dashboard log; the other pages still work.",
            alert_type="danger",
        )
    ]


def make_page(page: Page, settings: Settings) -> Callable[[], Any]:
    """A Panel app function: builds a fresh page for each browser session."""
    nav = [(p.route, p.title) for p in PAGES]

    def app() -> Any:
        from ui.metrics import PAGE_LOADS, SESSIONS, timed

        PAGE_LOADS.labels(page.route).inc()
        SESSIONS.inc()
        pn.state.on_session_destroyed(lambda _context: SESSIONS.dec())
        with timed("page_build"):
            try:
                main, context = page.build(settings)
            except Exception:  # never a traceback on screen
                log.exception("building page %s failed", page.route)
                main, context = _error_view(page.title), None
            return page_template(page.title, page.route, main, settings, nav, page_context=context)

    return app


def configure_panel() -> None:
    # Page load speed (ADR 0073), through Panel's private API (no public switch; ui.panel_adapters says why):
    # no Google Fonts stylesheet for the Fast design (no internet here: a render-blocking request that fails),
    # and no 1.8 MB MathJax bundle on every page with an HTML pane (none of ours holds LaTeX).
    from ui.panel_adapters import drop_fast_web_font, skip_mathjax_for_html_panes

    drop_fast_web_font()
    skip_mathjax_for_html_panes()
    # No extra JS extensions: everything the pages use ships with Panel and Bokeh (no CDN is reachable).
    pn.extension(
        notifications=False,
        sizing_mode="stretch_width",
        console_output="disable",
        design="fast",
    )


def health_handler(live: LiveData) -> type:
    """GET /api/health: what the banner and the Home page see (the poller's last view), as JSON."""
    import json

    from tornado.web import RequestHandler

    class HealthHandler(RequestHandler):  # type: ignore[misc]
        def get(self) -> None:
            services = [
                {"name": s.name, "label": s.label, "url": s.url, "healthy": s.healthy, "expected": s.expected}
                for s in live.services
            ]
            body = {
                "redis_up": live.redis_up,
                "down": [s.name for s in live.down_services()],
                "services": services,
                "checked_at": live.services_checked_at,
                "models_polled_at": max((d.updated for d in live.domains.values()), default=0.0),
            }
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(body))

    return HealthHandler


PASSWORD_ENV = "COELHO_DASHBOARD_PASSWORD"
USER_ENV = "COELHO_DASHBOARD_USER"
# The cookie-signing secret (on a cluster the Deployment sets it from its Secret).
COOKIE_SECRET_ENVS = ("COELHO_DASHBOARD_COOKIE_SECRET",)


def auth_options(environ: Any = None) -> dict[str, Any]:
    """pn.serve's login options: Panel's basic auth (a login page; this password, with the user name
    COELHO_DASHBOARD_USER when set, else any) when COELHO_DASHBOARD_PASSWORD is set, none otherwise (the local
    default: the dashboard binds 127.0.0.1).

    The login cookie is signed with COELHO_DASHBOARD_COOKIE_SECRET (on a cluster, from the dashboard's Secret),
    or a secret drawn at start (logins then last until the dashboard restarts).
    /metrics and /api/health stay open (Prometheus scrapes the first).

    >>> auth_options({})
    {}
    >>> sorted(auth_options({"COELHO_DASHBOARD_PASSWORD": "s3cret"}))
    ['basic_auth', 'cookie_secret']
    """
    import os
    import secrets

    env = os.environ if environ is None else environ
    password = env.get(PASSWORD_ENV)
    if not password:
        return {}
    user = env.get(USER_ENV, "").strip()
    cookie_secret = next((env[name] for name in COOKIE_SECRET_ENVS if env.get(name)), None)
    return {
        "basic_auth": {user: password} if user else password,
        "cookie_secret": cookie_secret or secrets.token_urlsafe(32),
    }


def _warm_samples() -> None:
    """Draw the forms' sample pools (ui.sample) in the background, before the first visitor needs one."""
    import threading

    from eventing.domains import DOMAINS
    from ui.sample import warm_samples

    threading.Thread(target=warm_samples, args=(list(DOMAINS.values()),), name="ui-warm-samples", daemon=True).start()


def serve(
    settings: Settings, port: int | None = None, show: bool = False, address: str | None = None, **kwargs: Any
) -> Any:
    """Serve every page on `address` (default the settings' host, 127.0.0.1); blocks unless threaded=True is
    passed."""
    from ui.chat_panel import CLAIM_PATH, cookie_claim_handler
    from ui.metrics import metrics_handler

    configure_panel()
    live = LiveData.get(settings)  # start polling before the first visitor arrives
    _warm_samples()
    routes = {page.route: make_page(page, settings) for page in PAGES}
    listen = port if port is not None else settings.ports["dashboard"]
    return pn.serve(
        routes,
        port=listen,
        address=address or settings.host,
        websocket_origin=[f"{settings.host}:{listen}", f"localhost:{listen}"],
        show=show,
        title="COELHO RealTime",
        autoreload=False,
        # A closed tab's session (and its periodic callbacks) is dropped within ~5 s instead of Bokeh's ~30 s:
        # on a shared 2-core machine, forgotten sessions refreshing charts slow every open page down.
        check_unused_sessions_milliseconds=2000,
        unused_session_lifetime_milliseconds=3000,
        extra_patterns=[
            (r"/api/health", health_handler(live)),
            (r"/metrics", metrics_handler()),
            (CLAIM_PATH, cookie_claim_handler()),
        ],
        **auth_options(),
        **kwargs,
    )
