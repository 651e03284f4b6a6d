"""Home: what the platform is, the live status of every service, and events/s learned per domain."""

from __future__ import annotations

import html
from typing import Any

import panel as pn

from coelho.settings import Settings
from eventing.domains import DOMAINS
from ui.layout import badge, card, flow, grow
from ui.live import LiveData

ROUTES = {name: f"/{name}" for name in DOMAINS}  # each domain's page (ui/app.py PAGES)

INTRO = """
<div style="font-size:15px;line-height:1.55;color:#1f2937">
<p style="margin-top:0"><b>COELHO RealTime</b> is a serverless, event-driven platform for <b>online machine learning</b>.
Three synthetic streams flow through Kafka and a Knative-style event broker into small functions:
<b>learn-one</b> updates a <a href="https://riverml.xyz" target="_blank">River</a> model one event at a time
(test-then-train, so every metric is honest), <b>predict-one</b> answers prediction requests from the freshest
model, and <b>checkpoint</b> registers model versions in MLflow with artifacts on S3.</p>
<p style="margin-bottom:0">Open an application to watch its model learn live, pause or resume training, change the
producer's rate, and ask the model for a prediction.</p>
</div>
"""


class HomePage:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.live = LiveData.get(settings)
        self.status = pn.pane.HTML("", sizing_mode="stretch_width")
        self.domain_cards = {name: pn.pane.HTML("", sizing_mode="stretch_width") for name in DOMAINS}

    def refresh(self) -> None:
        self.status.object = self.status_html()
        for name, pane in self.domain_cards.items():
            pane.object = self.domain_html(name)

    def status_html(self) -> str:
        services = self.live.services
        if not services:
            return "<div style='color:#6b7280'>Checking services…</div>"
        rows = []
        for s in services:
            if s.healthy:
                state = badge("UP", "#059669", solid=False)
            elif s.expected:
                state = badge("DOWN", "#d1382f")
            else:
                state = badge("NOT STARTED", "#6b7280", solid=False)
            rows.append(
                f"<tr style='border-top:1px solid #eef0f3'><td style='padding:5px 10px;font-weight:600'>{html.escape(s.label)}</td>"
                f"<td style='padding:5px 10px'>{state}</td>"
                f"<td style='padding:5px 10px;font-family:ui-monospace,monospace;font-size:12px;color:#4b5563'>{html.escape(s.url)}</td></tr>"
            )
        return (
            "<table class='service-status' style='border-collapse:collapse;width:100%;font-size:14px'>"
            + "".join(rows)
            + "</table>"
        )

    def domain_html(self, name: str) -> str:
        domain = DOMAINS[name]
        live = self.live.domains[name]
        state = (
            badge("● LIVE", "#059669")
            if live.learning
            else (badge("PAUSED", "#d97706") if live.paused else badge("IDLE", "#6b7280"))
        )
        learned = f"{live.events_learned:,}" if live.events_learned is not None else "—"
        return (
            f"<a href='{ROUTES[name]}' style='text-decoration:none;color:inherit'>"
            f"<div style='display:flex;justify-content:space-between;align-items:center'>"
            f"<span style='font-size:17px;font-weight:700;color:#1e3a8a'>{html.escape(domain.title)}</span>{state}</div>"
            f"<div style='color:#4b5563;font-size:13px;margin:6px 0 10px 0;min-height:36px'>{html.escape(domain.description)}</div>"
            f"<div style='display:flex;gap:8px 24px;flex-wrap:wrap'>"
            f"<div><div style='font-size:12px;color:#6b7280'>events/s learned</div><div class='events-per-s' style='font-size:26px;font-weight:800;color:#111827'>{live.learned_per_s:,.1f}</div></div>"
            f"<div><div style='font-size:12px;color:#6b7280'>events learned</div><div style='font-size:26px;font-weight:800;color:#111827'>{learned}</div></div>"
            f"<div style='min-width:0'><div style='font-size:12px;color:#6b7280'>model</div><div style='font-size:15px;font-weight:600;color:#111827;margin-top:8px;word-break:break-all'>{html.escape(live.model or domain.default_model)}</div></div>"
            "</div></a>"
        )

    def layout(self) -> list[Any]:
        self.refresh()
        pn.state.add_periodic_callback(self.refresh, period=1500)
        domains = flow(*[grow(card(p), 300) for p in self.domain_cards.values()])
        return [
            card(
                pn.pane.HTML(INTRO, sizing_mode="stretch_width"),
                title="Real-time machine learning, one event at a time",
            ),
            domains,
            card(self.status, title="Services"),
        ]

    def context(self) -> dict[str, Any]:
        return {
            "page": "home",
            "services": {s.name: s.healthy for s in self.live.services},
            "events_per_s": {n: round(d.learned_per_s, 2) for n, d in self.live.domains.items()},
        }


def build(settings: Settings) -> tuple[list[Any], Any]:
    page = HomePage(settings)
    return page.layout(), page.context
