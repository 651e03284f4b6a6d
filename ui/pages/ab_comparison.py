"""A/B testing on a use-case page (docs/adr/0082-ab-testing.md): the Predict tab's model/version selector, and the
Compare tab: two versions chosen by the person (a live model, an alias or a registered version) answering the same
form event side by side, with prefer-A/B buttons counted per page and version; both models' metric over the same
event axis; the paired verdicts; the split set from the page; Promote and Roll back, each confirmed first.

The choices come from `ui.ab_catalog.VersionCatalog` (live models and aliases from Redis, registered versions from
MLflow, read in the background); actions go through the same `functions.model_state.ab.control` as
`coelho models promote | rollback | split`.
"""

from __future__ import annotations

import functools
import html
import logging
from typing import Any

import panel as pn

from coelho.settings import Settings
from eventing.domain import Domain
from functions.model_state.ab import ALIASES
from functions.model_state.ab_preferences import arm_label, totals
from ui import state_reader
from ui.ab_catalog import Catalog, VersionCatalog, choices, promotion_choices, resolve, target
from ui.forms import PredictionForm
from ui.layout import MUTED, card, flow, grow, lazy
from ui.pages.metric_cards import format_metric
from ui.predict_client import PredictionReply, request_prediction

log = logging.getLogger("coelho.ui")

ERROR = "#b42318"
OK = "#059669"


def _say(color: str, text: str) -> str:
    return f"<span style='color:{color}'>{html.escape(text)}</span>"


def held_text(value: dict[str, Any] | None) -> str:
    """'logreg v3' for an alias's or champion's {model, version}; 'logreg' before its first checkpoint.

    >>> held_text({"model": "logreg", "version": 3}), held_text({"model": "logreg", "version": None}), held_text(None)
    ('logreg v3', 'logreg', '—')
    """
    if not value:
        return "—"
    version = f" v{value['version']}" if value.get("version") is not None else ""
    return f"{value.get('model')}{version}"


def answer_html(domain: Domain, side: str, reply: PredictionReply) -> str:
    """One side's answer: who answered (model, version, live or frozen) and the reply's fields."""
    if not reply.ok:
        return f"<div><b>{side}</b> {_say(ERROR, reply.error or 'no answer')}</div>"
    data = reply.data
    who = arm_label(str(data.get("model")), data.get("version") if data.get("frozen") else None)
    rows = "".join(
        f"<tr><td style='padding:2px 8px;color:{MUTED}'>{html.escape(f.name)}</td><td style='padding:2px 8px'>"
        + (
            format_metric(data.get(f.name))
            if isinstance(data.get(f.name), float)
            else html.escape(str(data.get(f.name)))
        )
        + "</td></tr>"
        for f in domain.prediction_fields
    )
    return (
        f"<div class='ab-answer-who'><b>{side}</b> {html.escape(who)}"
        f"<span style='color:{MUTED}'> · {reply.latency_ms:.0f} ms</span></div>"
        f"<table style='font-size:13px'>{rows}</table>"
    )


class ABComparison:
    """The A/B parts of a `DomainPage`, which mixes this in: the Predict tab's selector and the Compare tab."""

    domain: Domain
    settings: Settings
    form: PredictionForm
    route: str

    def _init_comparison(self) -> None:
        """The widgets (the Compare tab itself is built when first opened)."""
        self.catalog = VersionCatalog.get(self.settings)
        self._catalog_seen = -1.0
        self._state: dict[str, Any] = {}
        # The Predict tab: which live model, alias or registered version answers (options follow the catalogue).
        self.model_select = pn.widgets.Select(
            name="Model / version",
            options={"champion (default)": ""},
            value="",
            width=260,
            margin=(0, 6),
            css_classes=["model-select"],
        )
        # Compare: the two sides, chosen by the person.
        self.arm_a_select = pn.widgets.Select(name="A", options={}, width=250, css_classes=["ab-arm-a"])
        self.arm_b_select = pn.widgets.Select(name="B", options={}, width=250, css_classes=["ab-arm-b"])
        self.metric_select = pn.widgets.Select(
            name="Metric", options=list(self.domain.main_metrics), width=170, css_classes=["ab-metric"]
        )
        for widget in (self.arm_a_select, self.arm_b_select, self.metric_select):
            widget.param.watch(self._arms_changed, "value")
        self.ask_both_button = pn.widgets.Button(
            name="Ask A and B", button_type="primary", width=130, margin=(22, 6, 6, 6)
        )
        self.ask_both_button.on_click(self._ask_both)
        self.answer_a = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["ab-answer-a"])
        self.answer_b = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["ab-answer-b"])
        self.prefer_buttons = [
            pn.widgets.Button(name=label, width=100, disabled=True, css_classes=[f"ab-prefer-{choice}"])
            for label, choice in (("Prefer A", "a"), ("Prefer B", "b"), ("Tie", "tie"))
        ]
        for button, choice in zip(self.prefer_buttons, ("a", "b", "tie"), strict=True):
            button.on_click(functools.partial(self._prefer_clicked, choice))
        self._answered: tuple[str, str] | None = None  # the arm labels of the answers on screen
        self.curves: Any = None  # ui.ab_charts.PairedCurves, built with the tab
        # Verdicts, promotion, rollback.
        self.compare_html = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["compare-result"])
        self.compare_button = pn.widgets.Button(name="Compare now", width=130, margin=(22, 6, 6, 6))
        self.compare_button.on_click(self._compare)
        self.promote_select = pn.widgets.Select(
            name="Model or version to promote", options={}, width=230, css_classes=["promote-select"]
        )
        self.promote_button = pn.widgets.Button(name="Promote", button_type="warning", width=110, margin=(22, 6, 6, 6))
        self.promote_button.on_click(self._promote)
        self.rollback_button = pn.widgets.Button(name="Roll back", width=110, margin=(22, 6, 6, 6))
        self.rollback_button.on_click(self._rollback)
        self.confirm_text = pn.pane.HTML("", margin=(6, 10), css_classes=["ab-confirm-text"])
        self.confirm_button = pn.widgets.Button(name="Confirm", button_type="danger", width=110)
        self.confirm_button.on_click(self._confirm)
        self.cancel_button = pn.widgets.Button(name="Cancel", width=110)
        self.cancel_button.on_click(self._cancel)
        self.confirm_row = pn.Row(
            self.confirm_text, self.confirm_button, self.cancel_button, visible=False, css_classes=["ab-confirm"]
        )
        self._pending: dict[str, Any] | None = None  # the action waiting for its confirmation
        # The split, as `coelho models split DOMAIN ARM=W ARM=W`.
        self.split_a_select = pn.widgets.Select(name="First arm", options=[], width=190, css_classes=["split-a"])
        self.split_b_select = pn.widgets.Select(name="Second arm", options=[], width=190, css_classes=["split-b"])
        self.split_share = pn.widgets.IntSlider(
            name="Second arm's share (%)", start=0, end=100, step=5, value=10, width=220, css_classes=["split-share"]
        )
        self.split_button = pn.widgets.Button(name="Set split", width=110, margin=(22, 6, 6, 6))
        self.split_button.on_click(self._set_split)
        self.split_clear_button = pn.widgets.Button(name="End split", width=110, margin=(22, 6, 6, 6))
        self.split_clear_button.on_click(self._end_split)
        self.ab_message = pn.pane.HTML("", margin=(0, 10), css_classes=["ab-message"])

    @property
    def page_name(self) -> str:
        """The page preferences are recorded for: its route without the slash (the domain's name)."""
        return (getattr(self, "route", "") or "").strip("/") or self.domain.name

    def current_catalog(self) -> Catalog:
        return self.catalog.catalogs[self.domain.name]

    # --- the selectors ---------------------------------------------------------------------------------
    def _sync_choices(self, fallback: list[str] | None = None) -> None:
        """Give every selector the catalogue's choices when it changed (a person's choice is kept while offered).
        Before the catalogue's first reading, the poller's model names stand in as live models."""
        cat = self.current_catalog()
        if cat.updated == self._catalog_seen and cat.updated > 0:
            return
        if cat.updated <= 0:
            if not fallback:
                return
            cat = Catalog(self.domain.name, live=list(fallback))
        else:
            self._catalog_seen = cat.updated
        self._set_options(self.model_select, choices(cat, default=True), "")
        both = choices(cat)
        live_tokens = [f"model:{n}" for n in cat.live]
        champion_model = (cat.aliases.get("champion") or {}).get("model") or (cat.live[0] if cat.live else None)
        first = f"model:{champion_model}" if champion_model else next(iter(both.values()), None)
        second = next((t for t in live_tokens if t != first), None) or next(
            (t for t in both.values() if t != first), first
        )
        self._set_options(self.arm_a_select, both, first)
        self._set_options(self.arm_b_select, both, second)
        self._set_options(self.promote_select, promotion_choices(cat), None)
        arms = [*ALIASES, *cat.live]
        self._set_options(self.split_a_select, arms, "champion")
        self._set_options(self.split_b_select, arms, "challenger")

    @staticmethod
    def _set_options(widget: Any, options: dict[str, str] | list[str], default: str | None) -> None:
        values = list(options.values()) if isinstance(options, dict) else list(options)
        if widget.options == options:
            return
        current = widget.value
        widget.options = options
        if current in values and current not in ("", None):
            widget.value = current
        elif default in values:
            widget.value = default
        elif values:
            widget.value = values[0]

    def _arms_changed(self, event: Any = None) -> None:
        self._answered = None
        for button in self.prefer_buttons:
            button.disabled = True
        self._draw_curves()
        if self._state:
            self.compare_html.object = self.compare_view(self._state)

    # --- the tab -----------------------------------------------------------------------------------------
    def compare_tab(self) -> Any:
        return lazy(self._build_compare_tab)

    def _build_compare_tab(self) -> Any:
        from ui.ab_charts import PairedCurves

        self.curves = PairedCurves()
        self._sync_choices()
        self._compare()
        pick = flow(self.arm_a_select, self.arm_b_select, self.metric_select, self.ask_both_button, margin=(4, 6))
        side_by_side = flow(
            grow(card(self.answer_a, title="A", sizing_mode="stretch_width"), 300),
            grow(card(self.answer_b, title="B", sizing_mode="stretch_width"), 300),
        )
        compare = card(
            pick,
            side_by_side,
            flow(*self.prefer_buttons, margin=(4, 6)),
            self.curves.figure,
            title="A and B: the same event in the Predict tab's form, and the same events learned",
            sizing_mode="stretch_width",
        )
        controls = flow(
            self.compare_button, self.promote_select, self.promote_button, self.rollback_button, margin=(4, 6)
        )
        split = flow(
            self.split_a_select,
            self.split_b_select,
            self.split_share,
            self.split_button,
            self.split_clear_button,
            margin=(4, 6),
        )
        verdicts = card(
            controls,
            self.confirm_row,
            split,
            self.ab_message,
            self.compare_html,
            title="Champion, challenger and split; the live models compared on the same events (paired tests)",
            sizing_mode="stretch_width",
        )
        return pn.Column(compare, verdicts, sizing_mode="stretch_width")

    def _compare(self, event: Any = None) -> None:
        try:
            state = state_reader.ab_state(self.settings, self.domain.name)
        except Exception as err:
            log.warning("comparison failed: %s", err)
            self.compare_html.object = _say(ERROR, f"Comparison unavailable: {err}")
            return
        self._state = state
        self.compare_html.object = self.compare_view(state)
        self._draw_curves()

    def _draw_curves(self) -> None:
        if self.curves is None:
            return
        cat = self.current_catalog()
        metric = self.metric_select.value or (self.domain.main_metrics or [""])[0]
        sides = [resolve(cat, str(w.value or "")) for w in (self.arm_a_select, self.arm_b_select)]
        models = [m for m, _ in sides if m]
        try:
            curves = state_reader.ab_curves(self.settings, self.domain.name, list(dict.fromkeys(models)), metric)
        except Exception as err:
            log.warning("A/B curves not read: %s", err)
            return
        marks: list[float | None] = []
        for _, version in sides:
            found = cat.version(version) if version is not None else None
            marks.append(float(found["seq"]) if found else None)
        self.curves.update(
            metric,
            [arm_label(m, v) if m else "—" for m, v in sides],
            [curves.get(m, []) if m else [] for m, _ in sides],
            marks,
        )

    def compare_view(self, state: dict[str, Any]) -> str:
        aliases = state.get("aliases") or {}
        champion = aliases.get("champion") or {"model": state.get("champion"), "version": None}
        split = state.get("split")
        split_text = (
            ", ".join(f"{html.escape(str(a))} {100 * w / sum(x for _, x in split):.0f}%" for a, w in split)
            if split
            else "none (the champion answers)"
        )
        parts = [
            f"<div class='ab-aliases'><b>Champion</b> {html.escape(held_text(champion))} · <b>Challenger</b> "
            f"{html.escape(held_text(aliases.get('challenger')))} · <b>Split</b> "
            f"<span class='ab-split'>{split_text}</span></div>"
        ]
        if not state.get("pairs"):
            parts.append(
                f"<div style='color:{MUTED}'>One live model: add a challenger with "
                f"<code>coelho models add {self.domain.name} MODEL</code>.</div>"
            )
        cat = self.current_catalog()
        chosen = {m for m, _ in (resolve(cat, str(w.value or "")) for w in (self.arm_a_select, self.arm_b_select))}
        rows = []
        for p in state.get("pairs") or []:
            mark = " class='ab-selected' style='background:#eff6ff'" if {p["a"], p["b"]} == chosen else ""
            rows.append(
                f"<tr{mark}><td style='padding:4px 8px'>{html.escape(p['a'])} vs {html.escape(p['b'])}</td>"
                f"<td style='padding:4px 8px;text-align:right'>{p['n']:,}</td>"
                f"<td style='padding:4px 8px' class='ab-verdict'>{html.escape(p['verdict'])}</td></tr>"
            )
        if rows:
            parts.append(
                "<table style='border-collapse:collapse;width:100%;font-size:13px'><thead><tr>"
                f"<th style='text-align:left;color:{MUTED}'>Pair (live models)</th><th style='color:{MUTED}'>"
                f"Events</th><th style='text-align:left;color:{MUTED}'>Interval and verdict</th></tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table>"
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
        parts.append(self.preferences_html(state.get("preferences") or {}))
        return "".join(parts)

    @staticmethod
    def preferences_html(prefs: dict[str, dict[str, int]]) -> str:
        """People's preferences per page and pair of versions, and per version: shown, preferred, tied."""
        if not prefs:
            return ""
        pairs = "".join(
            f"<li>{html.escape(page or 'earlier')}: A {html.escape(a)} vs B {html.escape(b)}: "
            f"A {c['a']}, B {c['b']}, tie {c['tie']}</li>"
            for (page, a, b), c in sorted((tuple(k.split("|")), c) for k, c in prefs.items())
        )
        per_version = "".join(
            f"<tr><td style='padding:2px 8px'>{html.escape(arm)}</td><td style='padding:2px 8px;text-align:right'>"
            f"{t['shown']}</td><td style='padding:2px 8px;text-align:right'>{t['preferred']}</td>"
            f"<td style='padding:2px 8px;text-align:right'>{t['tie']}</td></tr>"
            for arm, t in sorted(totals(prefs).items())
        )
        head = "".join(
            f"<th style='padding:2px 8px;color:{MUTED}'>{h}</th>" for h in ("Version", "Shown", "Preferred", "Tie")
        )
        return (
            f"<div class='ab-preferences'><b>People's preferences</b><ul>{pairs}</ul>"
            f"<table class='ab-preference-counts' style='font-size:13px'><thead><tr>{head}</tr></thead>"
            f"<tbody>{per_version}</tbody></table></div>"
        )

    # --- promote and roll back, each confirmed first --------------------------------------------------
    def _promote(self, event: Any = None) -> None:
        chosen = self.promote_select.value
        if not chosen:
            self.ab_message.object = _say(ERROR, "Choose a model or version to promote.")
            return
        label = next((k for k, v in (self.promote_select.options or {}).items() if v == chosen), str(chosen))
        current = held_text((self._state.get("aliases") or {}).get("champion")) if self._state else "—"
        self._ask(
            {"action": "promote", "target": str(chosen)},
            f"Promote {label} to champion? The champion now is {current}; predict-one follows within 2 s, "
            "and Roll back gives it back.",
        )

    def _rollback(self, event: Any = None) -> None:
        previous = self._state.get("previous_champion") if self._state else None
        current = held_text((self._state.get("aliases") or {}).get("champion")) if self._state else "—"
        if not previous:
            self.ab_message.object = _say(ERROR, f"{self.domain.name} has no earlier champion to roll back to.")
            return
        self._ask({"action": "rollback"}, f"Roll back the champion from {current} to {held_text(previous)}?")

    def _ask(self, action: dict[str, Any], question: str) -> None:
        self._pending = action
        self.confirm_text.object = f"<b>{html.escape(question)}</b>"
        self.confirm_row.visible = True
        self.ab_message.object = ""

    def _cancel(self, event: Any = None) -> None:
        self._pending = None
        self.confirm_row.visible = False
        self.ab_message.object = _say(MUTED, "Nothing changed.")

    def _confirm(self, event: Any = None) -> None:
        pending, self._pending = self._pending, None
        self.confirm_row.visible = False
        if pending is None:
            return
        result = self._control(pending)
        if result is None:
            return
        new = result["champion"]
        self.ab_message.object = _say(OK, f"Champion is now {held_text(new)}: predict-one follows within 2 s.")

    def _control(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """One `ab.control` action, as `coelho models` runs it; the error is shown, never raised."""
        try:
            result = state_reader.ab_control(self.settings, self.domain.name, data)
        except Exception as err:
            errors = getattr(err, "errors", None)
            text = "; ".join(str(v) for v in errors.values()) if isinstance(errors, dict) else str(err)
            self.ab_message.object = _say(ERROR, text)
            return None
        self.catalog.refresh_now()
        self._compare()
        return result

    # --- the split ----------------------------------------------------------------------------------------
    def _set_split(self, event: Any = None) -> None:
        a, b, share = self.split_a_select.value, self.split_b_select.value, int(self.split_share.value or 0)
        if not a or not b or a == b:
            self.ab_message.object = _say(ERROR, "Choose two different arms for the split.")
            return
        result = self._control({"action": "split", "weights": {a: 100 - share, b: share}})
        if result is not None:
            self.ab_message.object = _say(OK, self._split_said(result))

    def _end_split(self, event: Any = None) -> None:
        result = self._control({"action": "split", "weights": {}})
        if result is not None:
            self.ab_message.object = _say(OK, self._split_said(result))

    @staticmethod
    def _split_said(result: dict[str, Any]) -> str:
        if not result.get("split"):
            return "No split: the champion answers every request."
        return "Split set: " + ", ".join(f"{a} {w:g}%" for a, w in result["split"].items()) + " (sticky per entity)."

    # --- side by side and preferences ----------------------------------------------------------------
    def _ask_both(self, event: Any = None) -> None:
        a, b = str(self.arm_a_select.value or ""), str(self.arm_b_select.value or "")
        if not a or not b:
            self.answer_a.object = _say(ERROR, "Choose A and B.")
            return
        payload = self.form.payload()
        replies = []
        for token in (a, b):
            model, version = target(token)
            replies.append(request_prediction(self.settings, self.domain, payload, model=model, version=version))
        self.answer_a.object = answer_html(self.domain, "A", replies[0])
        self.answer_b.object = answer_html(self.domain, "B", replies[1])
        if all(r.ok for r in replies):
            self._answered = (
                self._arm_of(replies[0]),
                self._arm_of(replies[1]),
            )
        else:
            self._answered = None
        for button in self.prefer_buttons:
            button.disabled = self._answered is None

    @staticmethod
    def _arm_of(reply: PredictionReply) -> str:
        """Who answered: the live model (model@live), or the registered version served frozen (model@vN)."""
        data = reply.data
        return arm_label(str(data.get("model")), data.get("version") if data.get("frozen") else None)

    def _prefer_clicked(self, choice: str, event: Any = None) -> None:
        self._prefer(choice)

    def _prefer(self, choice: str) -> None:
        if self._answered is None:
            return
        a, b = self._answered
        try:
            result = state_reader.record_preference(self.settings, self.domain.name, a, b, choice, self.page_name)
        except Exception as err:
            self.ab_message.object = _say(ERROR, f"Preference not recorded: {err}")
            return
        for button in self.prefer_buttons:
            button.disabled = True
        picked = {"a": a, "b": b, "tie": "a tie"}[choice]
        self.ab_message.object = _say(OK, f"Recorded on {self.page_name}: {picked} ({result['count']} so far)")
        self._compare()
