"""A/B testing on a use-case page, its Compare tab: champion, challenger and split; each pair of live models
compared on the same events, with its verdict; Promote and Roll back; and a person's preference between two
models' answers to the form's event.
"""

from __future__ import annotations

import functools
import html
import logging
from typing import Any

import panel as pn

from coelho.settings import Settings
from eventing.domain import Domain
from ui import state_reader
from ui.forms import PredictionForm
from ui.layout import MUTED, card, flow, lazy
from ui.pages.metric_cards import format_metric
from ui.predict_client import request_prediction

log = logging.getLogger("coelho.ui")


class ABComparison:
    """The Compare tab of a `DomainPage`, which mixes it in: its widgets (`_init_comparison`) and callbacks."""

    domain: Domain
    settings: Settings
    form: PredictionForm

    def _init_comparison(self) -> None:
        """The Compare tab's widgets (the tab itself is built when first opened)."""
        self.compare_html = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["compare-result"])
        self.compare_button = pn.widgets.Button(name="Compare now", width=130)
        self.compare_button.on_click(self._compare)
        self.promote_select = pn.widgets.Select(
            name="Model to promote", options=[], width=210, css_classes=["promote-select"]
        )
        self.promote_button = pn.widgets.Button(name="Promote", button_type="warning", width=110, margin=(22, 6, 6, 6))
        self.promote_button.on_click(self._promote)
        self.rollback_button = pn.widgets.Button(name="Roll back", width=110, margin=(22, 6, 6, 6))
        self.rollback_button.on_click(self._rollback)
        self.ab_message = pn.pane.HTML("", margin=(0, 10), css_classes=["ab-message"])
        self.ask_both_button = pn.widgets.Button(name="Ask A and B", width=130, disabled=True)
        self.ask_both_button.on_click(self._ask_both)
        self.both_html = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["ab-answers"])
        self.prefer_buttons = [
            pn.widgets.Button(name=label, width=100, disabled=True) for label in ("Prefer A", "Prefer B", "Tie")
        ]
        for button, choice in zip(self.prefer_buttons, ("a", "b", "tie"), strict=True):
            button.on_click(functools.partial(self._prefer_clicked, choice))
        self._pair: tuple[str, str] | None = None

    def compare_tab(self) -> Any:
        return lazy(self._build_compare_tab)

    def _build_compare_tab(self) -> Any:
        """Champion, challenger and split; each pair of live models compared on the same events, with its verdict;
        Promote and Roll back; and a person's preference between two models' answers to the form's event."""
        self._compare()
        controls = flow(
            self.compare_button, self.promote_select, self.promote_button, self.rollback_button, margin=(4, 6)
        )
        verdicts = card(
            controls,
            self.ab_message,
            self.compare_html,
            title="A/B comparison: the live models on the same events (paired tests)",
            sizing_mode="stretch_width",
        )
        prefer = card(
            flow(self.ask_both_button, *self.prefer_buttons, margin=(4, 6)),
            self.both_html,
            title="Which answer is better? (the event in the Predict tab's form)",
            sizing_mode="stretch_width",
        )
        return pn.Column(verdicts, prefer, sizing_mode="stretch_width")

    def _compare(self, event: Any = None) -> None:
        try:
            state = state_reader.ab_state(self.settings, self.domain.name)
        except Exception as err:
            log.warning("comparison failed: %s", err)
            self.compare_html.object = (
                f"<span style='color:#b42318'>Comparison unavailable: {html.escape(str(err))}</span>"
            )
            return
        self.compare_html.object = self.compare_view(state)
        self.promote_select.options = list(state["models"])
        self._pair = (state["pairs"][0]["a"], state["pairs"][0]["b"]) if state["pairs"] else None
        self.ask_both_button.disabled = self._pair is None

    def compare_view(self, state: dict[str, Any]) -> str:
        aliases = state.get("aliases") or {}

        def held(alias: str) -> str:
            value = aliases.get(alias)
            if not value:
                return "—" if alias != "champion" else html.escape(str(state["champion"])) + " (first model)"
            version = f" v{value['version']}" if value.get("version") is not None else ""
            return html.escape(f"{value.get('model')}{version}")

        split = state.get("split")
        split_text = (
            ", ".join(f"{html.escape(str(a))} {w}" for a, w in split) if split else "none (the champion answers)"
        )
        parts = [
            f"<div class='ab-aliases'><b>Champion</b> {held('champion')} · <b>Challenger</b> {held('challenger')}"
            f" · <b>Split</b> {split_text}</div>"
        ]
        if not state["pairs"]:
            parts.append(
                f"<div style='color:{MUTED}'>One live model: add a challenger with "
                f"<code>coelho models add {self.domain.name} MODEL</code>.</div>"
            )
        rows = "".join(
            f"<tr style='border-top:1px solid #eef0f3'><td style='padding:4px 8px'><b>A</b> {html.escape(p['a'])}<br>"
            f"<b>B</b> {html.escape(p['b'])}</td><td style='padding:4px 8px;text-align:right'>{p['n']:,}</td>"
            f"<td style='padding:4px 8px' class='ab-verdict'>{html.escape(p['verdict'])}</td></tr>"
            for p in state["pairs"]
        )
        if rows:
            parts.append(
                "<table style='border-collapse:collapse;width:100%;font-size:13px'><thead><tr>"
                f"<th style='text-align:left;color:{MUTED}'>Pair</th><th style='color:{MUTED}'>Events</th>"
                f"<th style='text-align:left;color:{MUTED}'>Verdict</th></tr></thead><tbody>{rows}</tbody></table>"
            )
        scores = state.get("live_scores") or []
        if scores:
            items = "".join(
                f"<li>{html.escape(s['model'])} v{s['version'] if s['version'] is not None else '—'} ({s['mode']}): "
                f"{s['scored']:,} scored"
                + "".join(
                    f", {k.replace('_', ' ')} {format_metric(s[k])}"
                    for k in ("accuracy", "log_loss", "mae", "rmse")
                    if k in s
                )
                + "</li>"
                for s in scores
            )
            parts.append(
                f"<div style='margin-top:6px'><b>Served on live traffic</b>, scored when labels arrived:<ul>{items}</ul></div>"
            )
        prefs = state.get("preferences") or {}
        if prefs:
            items = "".join(
                f"<li>{html.escape(pair.replace('|', ' vs '))}: A {c['a']}, B {c['b']}, tie {c['tie']}</li>"
                for pair, c in prefs.items()
            )
            parts.append(f"<div><b>People's preferences</b><ul>{items}</ul></div>")
        return "".join(parts)

    def _promote(self, event: Any = None) -> None:
        self._control({"action": "promote", "target": self.promote_select.value})

    def _rollback(self, event: Any = None) -> None:
        self._control({"action": "rollback"})

    def _control(self, data: dict[str, Any]) -> None:
        try:
            result = state_reader.ab_control(self.settings, self.domain.name, data)
        except Exception as err:
            errors = getattr(err, "errors", None)
            text = "; ".join(errors.values()) if isinstance(errors, dict) else str(err)
            self.ab_message.object = f"<span style='color:#b42318'>{html.escape(text)}</span>"
            return
        new = result["champion"]
        version = f" v{new['version']}" if new.get("version") is not None else ""
        self.ab_message.object = (
            f"<span style='color:#059669'>Champion is now {html.escape(str(new['model']))}{version}: "
            "predict-one follows within 2 s.</span>"
        )
        self._compare()

    def _ask_both(self, event: Any = None) -> None:
        if self._pair is None:
            return
        payload = self.form.payload()
        answers = [request_prediction(self.settings, self.domain, payload, model=m) for m in self._pair]
        fields = [f.name for f in self.domain.prediction_fields]
        cells = []
        for label, model, reply in zip(("A", "B"), self._pair, answers, strict=True):
            shown = (
                ", ".join(
                    f"{f} {format_metric(reply.data.get(f)) if isinstance(reply.data.get(f), float) else html.escape(str(reply.data.get(f)))}"
                    for f in fields
                )
                if reply.ok
                else html.escape(reply.error or "no answer")
            )
            cells.append(f"<div><b>{label}</b> {html.escape(model)}: {shown}</div>")
        self.both_html.object = "".join(cells)
        for button in self.prefer_buttons:
            button.disabled = not all(r.ok for r in answers)

    def _prefer_clicked(self, choice: str, event: Any = None) -> None:
        self._prefer(choice)

    def _prefer(self, choice: str) -> None:
        if self._pair is None:
            return
        a, b = self._pair
        try:
            result = state_reader.record_preference(self.settings, self.domain.name, a, b, choice)
        except Exception as err:
            self.ab_message.object = (
                f"<span style='color:#b42318'>Preference not recorded: {html.escape(str(err))}</span>"
            )
            return
        for button in self.prefer_buttons:
            button.disabled = True
        picked = {"a": a, "b": b, "tie": "a tie"}[choice]
        self.ab_message.object = (
            f"<span style='color:#059669'>Recorded: {html.escape(picked)} ({result['count']} so far)</span>"
        )
        self._compare()
