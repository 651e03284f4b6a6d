"""What every application page has: model status, training switch, producer controls, the prediction form,
live metric cards (ui/pages/metric_cards.py) and metric charts, the Compare tab (ui/pages/ab_comparison.py). TFD,
ETA and ECCI pages add their result views and tabs.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import panel as pn

from coelho.settings import Settings
from eventing.domain import Domain
from ui import state_reader
from ui.ab_catalog import resolve, target
from ui.charts import PALETTE, MetricChart
from ui.forms import PredictionForm
from ui.layout import MUTED, badge, card, flow, grow, lazy
from ui.live import DomainLive, LiveData
from ui.pages.ab_comparison import ABComparison
from ui.pages.metric_cards import MetricCards, format_metric
from ui.predict_client import PredictionReply, request_prediction

log = logging.getLogger("coelho.ui")


def ago(timestamp: Any) -> str:
    """'3 min ago' for a unix time in seconds (or ms, or ISO text)."""
    try:
        if isinstance(timestamp, str):
            t = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
        else:
            t = float(timestamp)
            if t > 1e12:
                t /= 1000
    except (TypeError, ValueError):
        return ""
    delta = max(0.0, time.time() - t)
    if delta < 60:
        return f"{delta:.0f} s ago"
    if delta < 3600:
        return f"{delta / 60:.0f} min ago"
    if delta < 86400:
        return f"{delta / 3600:.1f} h ago"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def producer_status_html(
    domain: str, enabled: bool | None, producers: list[dict[str, Any]], arriving_per_s: float
) -> tuple[str, str]:
    """The producer card's badge and detail: whether a producer really runs (its heartbeats), the rate each is
    set to, and the rate events actually arrive at the domain's log (whoever sends them).

    >>> badge_html, detail = producer_status_html("tfd", None, [], 0.0)
    >>> "NO PRODUCER" in badge_html, "coelho produce tfd" in detail, "0.0 events/s" in detail
    (True, True, True)
    >>> beat = {"id": "h:1", "rate": 5.0, "enabled": True, "sent": 40, "count": 500, "t": 0}
    >>> badge_html, detail = producer_status_html("tfd", True, [beat], 4.8)
    >>> "STREAMING" in badge_html, "set to 5 events/s" in detail, "40 of 500 sent" in detail, "4.8" in detail
    (True, True, True, True)
    """
    arriving = (
        f"<div>Arriving: <b class='arriving-rate'>{arriving_per_s:,.1f} events/s</b> "
        "<span title='how fast the domain log grows'>(logged)</span></div>"
    )
    if not producers:
        state = badge("NO PRODUCER", "#6b7280", solid=False)
        detail = (
            "<div>No producer is running. Start one with "
            f"<code>coelho produce {html.escape(domain)}</code> (or <code>coelho up</code> without "
            "<code>--no-producers</code>).</div>"
        )
    else:
        paused = enabled is False or not any(p.get("enabled", True) for p in producers)
        state = badge("STOPPED", "#6b7280", solid=False) if paused else badge("STREAMING", "#059669", solid=False)
        lines = []
        for p in producers:
            rate = float(p.get("rate") or 0)
            rate_text = f"set to {rate:g} events/s" if rate > 0 else "as fast as it can"
            count = p.get("count")
            sent = int(p.get("sent") or 0)
            progress = f" · {sent:,} of {int(count):,} sent" if count else f" · {sent:,} sent"
            lines.append(f"<div class='running-producer'>running, {rate_text}{progress}</div>")
        detail = "".join(lines)
    return state, f"<div class='producer-detail' style='color:{MUTED};font-size:12px'>{detail}{arriving}</div>"


class DomainPage(ABComparison):
    """One application page. Subclasses fill `result_view`, `show_prediction` and optionally `extra_tabs`."""

    route = "/"
    form_columns = 2

    def __init__(self, domain: Domain, settings: Settings) -> None:
        self.domain = domain
        self.settings = settings
        self.live = LiveData.get(settings)
        self.form = PredictionForm(domain)
        self.form.on_change(self._form_changed)
        self.last_reply: PredictionReply | None = None
        self._last_update = -1.0
        self._data_key: Any = None  # what the heavy views last showed: redrawn only when the model moved on
        self._refresh_failed = False

        # model status, training, producer
        self.model_info = pn.pane.HTML("", sizing_mode="stretch_width", margin=(4, 10))
        self.training_switch = pn.widgets.Switch(
            value=True, width=50, margin=(14, 6, 6, 10), css_classes=["training-switch"]
        )
        self.training_state = pn.pane.HTML("", margin=(6, 6))
        self.training_switch.param.watch(self._toggle_training, "value")
        self.producer_switch = pn.widgets.Switch(
            value=True, width=50, margin=(14, 6, 6, 10), css_classes=["producer-switch"]
        )
        self.producer_switch.param.watch(self._toggle_producer, "value")
        self.rate_input = pn.widgets.EditableFloatSlider(
            name="Rate (events/s)",
            start=0.5,
            end=100.0,
            step=0.5,
            value=settings.producer_rate,
            width=220,
            margin=(0, 10),
            css_classes=["producer-rate"],
        )
        self.producer_state = pn.pane.HTML("", margin=(6, 6))
        self.producer_detail = pn.pane.HTML("", margin=(0, 10), sizing_mode="stretch_width")
        self.rate_input.param.watch(self._change_rate, "value_throttled")
        self.control_message = pn.pane.HTML("", margin=(0, 10))
        self._syncing = False
        # When a person last flipped a switch: poller snapshots read before it must not flip the switch back.
        self._control_changed_at = 0.0

        # prediction
        self.predict_button = pn.widgets.Button(name="Predict", button_type="primary", width=140)
        self.predict_button.on_click(self._predict)
        self.prediction_status = pn.pane.HTML("", sizing_mode="stretch_width", margin=(4, 10))
        self.models_table = pn.pane.HTML("", sizing_mode="stretch_width", margin=(2, 10))

        # A/B testing: the Predict tab's model/version selector (`model_select`: a live model, an alias or a
        # registered version, from ui/ab_catalog.py) and the Compare tab (built when first opened)
        self._init_comparison()
        self.model_select.param.watch(self._model_chosen, "value")

        # metrics
        self.cards = MetricCards(self.card_metrics(), dict(domain.metric_help))
        self.charts: dict[str, MetricChart] = {}  # built with the "Metric charts" tab, when it is first opened
        self.all_metrics = pn.pane.HTML("", sizing_mode="stretch_width")

    # --- hooks for subclasses ------------------------------------------------------------------------
    def card_metrics(self) -> list[str]:
        return list(self.domain.main_metrics)

    def result_view(self) -> Any:
        raise NotImplementedError

    def show_prediction(self, data: dict[str, Any]) -> None:
        """Show predict-one's reply: `data` has the fields the domain declares (`Domain.reply_fields`)."""
        raise NotImplementedError

    def clear_prediction(self) -> None:
        """Forget the last prediction (its inputs changed)."""
        self.last_reply = None
        self.prediction_status.object = (
            f"<span style='color:{MUTED}'>Inputs changed: press Predict for a fresh prediction.</span>"
        )

    def extra_tabs(self) -> list[tuple[str, Any]]:
        return []

    def refresh_extra(self, live: DomainLive) -> None:
        """Update domain-specific live views (confusion matrix, clusters)."""

    def form_view(self) -> Any:
        return self.form.layout(ncols=self.form_columns)

    def later(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the next tick of the page's event loop: what the result is shows first, details after."""
        doc = pn.state.curdoc
        if doc is None or getattr(doc, "session_context", None) is None:
            fn()
            return
        doc.add_next_tick_callback(fn)

    # --- callbacks -----------------------------------------------------------------------------------
    def _form_changed(self, path: str) -> None:
        if self.last_reply is not None:
            self.clear_prediction()

    def _predict(self, event: Any = None) -> None:
        from ui.metrics import PREDICTION_CLICKS, timed

        try:
            with timed("predict"):
                reply = self.predict()
            outcome = "invalid" if reply is None else ("ok" if reply.ok else "refused")
            PREDICTION_CLICKS.labels(self.domain.name, outcome).inc()
        except Exception:  # a bug must never put a traceback on screen
            PREDICTION_CLICKS.labels(self.domain.name, "error").inc()
            log.exception("prediction failed")
            self.prediction_status.object = (
                "<span style='color:#b42318'>Something went wrong while predicting; see the dashboard log.</span>"
            )

    def predict(self) -> PredictionReply | None:
        clean = self.form.validate()
        if clean is None:
            n = len(self.form.errors)
            self.prediction_status.object = f"<span style='color:#b42318'>⚠ {n} field{'s' if n > 1 else ''} need{'s' if n == 1 else ''} fixing before predicting (see the messages below the fields).</span>"
            return None
        # No loading spinner: predict-one answers in ~10 ms, and toggling `loading` twice cost two extra
        # re-renders of the button before the result could be drawn (ADR 0073).
        model, version = target(str(self.model_select.value or ""))
        reply = request_prediction(self.settings, self.domain, self.form.payload(), model=model, version=version)
        if reply.ok:
            self.last_reply = reply
            self.show_prediction(reply.data)
            model, version, learned = reply.data["model"], reply.data["version"], reply.data["events_learned"]
            frozen = " (frozen)" if reply.data.get("frozen") else ""
            bits = [
                f"answered in {reply.latency_ms:.0f} ms",
                f"model {html.escape(str(model))}"
                + (f" v{html.escape(str(version))}" if version is not None else "")
                + frozen,
                f"after {int(learned):,} events learned",
            ]
            self.prediction_status.object = (
                f"<span style='color:{MUTED}' class='prediction-meta'>Prediction {' · '.join(bits)}</span>"
            )
            log.info("prediction %s answered in %.1f ms", self.domain.name, reply.latency_ms)
        else:
            for path, message in reply.field_errors.items():
                if path in self.form.messages:
                    self.form.messages[path].object = f"⚠ {html.escape(message)}"
                    self.form.messages[path].visible = True
            self.prediction_status.object = (
                f"<span style='color:#b42318'>⚠ {html.escape(reply.error or 'No prediction')}</span>"
            )
        return reply

    def _toggle_training(self, event: Any) -> None:
        if self._syncing:
            return
        self._control_changed_at = time.time()
        try:
            state_reader.set_training(self.settings, self.domain.name, paused=not event.new)
            self.control_message.object = ""
            self.live.refresh_now()
        except Exception as err:
            log.warning("training switch failed: %s", err)
            self.control_message.object = f"<span style='color:#b42318'>Could not {'resume' if event.new else 'pause'} training: {html.escape(str(err))}</span>"
        self._show_training(not event.new)

    def _show_training(self, paused: bool | None) -> None:
        if paused is None:
            self.training_state.object = f"<span style='color:{MUTED}'>unknown</span>"
        elif paused:
            self.training_state.object = badge("PAUSED", "#d97706", solid=False)
        else:
            self.training_state.object = badge("LEARNING", "#059669", solid=False)

    def _show_producer(self, enabled: bool | None) -> None:
        live = self.live.domains[self.domain.name]
        state, detail = producer_status_html(self.domain.name, enabled, live.producers, live.arriving_per_s)
        if self.producer_state.object != state:
            self.producer_state.object = state
        if self.producer_detail.object != detail:
            self.producer_detail.object = detail

    def _toggle_producer(self, event: Any) -> None:
        if self._syncing:
            return
        self._set_producer(enabled=bool(event.new))
        self._show_producer(bool(event.new))

    def _change_rate(self, event: Any) -> None:
        if self._syncing or event.new is None:
            return
        self._set_producer(rate=float(event.new))

    def _set_producer(self, enabled: bool | None = None, rate: float | None = None) -> None:
        self._control_changed_at = time.time()
        try:
            state_reader.set_producer(self.settings, self.domain.name, enabled=enabled, rate=rate)
            self.control_message.object = ""
            self.live.refresh_now()
        except Exception as err:
            log.warning("producer control failed: %s", err)
            self.control_message.object = (
                "<span style='color:#b42318'>Could not change the producer: Redis is not reachable.</span>"
            )

    # --- live refresh --------------------------------------------------------------------------------
    def refresh(self) -> None:
        from ui.metrics import timed

        try:
            with timed("page_refresh"):
                self._refresh()
        except Exception:
            if not self._refresh_failed:  # once per page: a bug must not flood the log every second
                log.exception("refreshing the %s page failed", self.domain.name)
            self._refresh_failed = True

    def _refresh(self) -> None:
        live = self.live.domains[self.domain.name]
        if live.updated == self._last_update:
            return
        self._last_update = live.updated
        self.model_info.object = self.model_html(live)
        self._show_models(live)
        # A snapshot read before the person's last click would flip the switch back: only newer ones sync it.
        if live.updated > self._control_changed_at:
            self._syncing = True
            try:
                if live.paused is not None and self.training_switch.value == live.paused:
                    self.training_switch.value = not live.paused
                if live.producer_enabled is not None and self.producer_switch.value != live.producer_enabled:
                    self.producer_switch.value = live.producer_enabled
                if live.producer_rate is not None and abs((self.rate_input.value or 0) - live.producer_rate) > 1e-9:
                    self.rate_input.value = min(max(live.producer_rate, self.rate_input.start), self.rate_input.end)
            finally:
                self._syncing = False
            self._show_training(live.paused)
        self._show_producer(self.producer_switch.value if live.producer_enabled is None else live.producer_enabled)
        # The poller stamps a new snapshot every second even when nothing was learned: redraw cards, charts and
        # the extra views only when the model moved on (a paused or idle model costs the page nothing).
        key = (
            live.model,
            live.available,
            live.events_learned,
            live.behind,
            live.version,
            tuple(live.drifts_at),
            sum(len(v) for v in live.history.values()),
        )
        if key == self._data_key:
            return
        self._data_key = key
        self.cards.update({name: self.metric_value(live, name) for name in self.cards.names})
        self._draw_charts(live)
        self.refresh_extra(live)

    def _draw_charts(self, live: DomainLive) -> None:
        if not self.charts:  # the tab was never opened
            return
        for name, chart in self.charts.items():
            points = live.history.get(name, [])
            chart.update([p[0] for p in points], [p[1] for p in points], live.drifts_at)
        self.all_metrics.object = self.metrics_table(live)

    def _model_chosen(self, event: Any) -> None:
        self.models_table.object = self.models_html(self.live.domains[self.domain.name].models, self._chosen_model())

    def _chosen_model(self) -> str | None:
        """The model the selector's choice stands for (a live model, or the model of an alias or version)."""
        return resolve(self.current_catalog(), str(self.model_select.value or ""))[0]

    def _show_models(self, live: DomainLive) -> None:
        """The table of every model of the domain, and the choices of which one Predict asks."""
        self._sync_choices([str(row["name"]) for row in live.models])
        self.models_table.object = self.models_html(live.models, self._chosen_model())

    def models_html(self, rows: list[dict[str, Any]], selected: str | None = None) -> str:
        if not rows:
            return ""
        metric = html.escape(str(rows[0].get("metric") or "metric"))
        head = "".join(
            f"<th style='padding:3px 10px;text-align:{a};font-weight:600;color:{MUTED};white-space:nowrap'>{h}</th>"
            for h, a in (("Model", "left"), ("Version", "left"), ("Events", "right"), (metric, "right"), ("", "left"))
        )
        body = []
        for row in rows:
            if row.get("learning"):
                state = badge("● LIVE", "#059669")
            elif row.get("paused"):
                state = badge("PAUSED", "#d97706")
            else:
                state = badge("IDLE", "#6b7280")
            events = row.get("events_learned")
            mark = " ◀" if row["name"] == selected else ""
            body.append(
                f"<tr style='border-top:1px solid #eef0f3' data-model='{html.escape(str(row['name']))}'>"
                f"<td style='padding:3px 10px;font-weight:600'>{html.escape(str(row['name']))}"
                f"<span style='color:{MUTED};font-weight:400' title='Predict asks this model'>{mark}</span></td>"
                f"<td style='padding:3px 10px'>{html.escape(str(row.get('version') or '—'))}</td>"
                f"<td style='padding:3px 10px;text-align:right'>{'—' if events is None else f'{int(events):,}'}</td>"
                f"<td style='padding:3px 10px;text-align:right'>{format_metric(row.get('value'))}</td>"
                f"<td style='padding:3px 10px;white-space:nowrap'>{state}</td></tr>"
            )
        return (
            "<table class='models-table' style='border-collapse:collapse;width:100%;font-size:13px;"
            f"font-variant-numeric:tabular-nums'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        )

    def metric_value(self, live: DomainLive, name: str) -> Any:
        if name == "n_clusters":
            return live.n_clusters
        if name == "n_micro_clusters":
            return live.n_micro_clusters
        return live.metrics.get(name)

    def model_html(self, live: DomainLive) -> str:
        if not live.available:
            return (
                f"<div style='color:{MUTED}'>No model state yet: the model appears once learn-one has learned its "
                "first event (or Redis is unreachable).</div>"
            )
        status = (
            badge("● LIVE", "#059669")
            if live.learning
            else (badge("PAUSED", "#d97706") if live.paused else badge("IDLE", "#6b7280"))
        )
        version = f"version {html.escape(str(live.version))}" if live.version else "no registered version yet"
        events = f"{live.events_learned:,}" if live.events_learned is not None else "—"
        rate = f" · {live.learned_per_s:,.1f} events/s" if live.learning else ""
        if live.behind:  # committed to the log, not learned yet: paused, or catching up
            rate += f" · <b class='events-behind'>{live.behind:,}</b> waiting to be learned"
        if live.last_checkpoint:
            cp = live.last_checkpoint
            when = ago(cp.get("time_ms") or cp.get("time") or "")
            cp_version = cp.get("version") or cp.get("model_version")
            cp_events = cp.get("events_learned")
            checkpoint = "Last checkpoint: " + " · ".join(
                x
                for x in (
                    f"v{cp_version}" if cp_version else "",
                    f"{int(cp_events):,} events" if cp_events is not None else "",
                    when,
                )
                if x
            )
        else:
            checkpoint = "No checkpoint yet"
        return (
            f"<div style='display:flex;align-items:center;gap:14px;flex-wrap:wrap'>"
            f"<span style='font-size:18px;font-weight:700;color:#111827' class='model-name'>{html.escape(live.model or '—')}</span>"
            f"{status}<span style='color:#374151'>{version}</span>"
            f"<span style='color:#374151'><b class='events-learned'>{events}</b> events learned{rate}</span></div>"
            f"<div style='color:{MUTED};font-size:13px;margin-top:4px'>{html.escape(checkpoint)}</div>"
        )

    def metrics_table(self, live: DomainLive) -> str:
        rows = []
        for name, value in live.metrics.items():
            if isinstance(value, dict | str):
                continue
            help_text = html.escape(self.domain.metric_help.get(name, ""))
            rows.append(
                f"<tr><td style='padding:4px 10px;font-weight:600'>{html.escape(name)}</td>"
                f"<td style='padding:4px 10px;text-align:right;font-variant-numeric:tabular-nums'>{format_metric(value)}</td>"
                f"<td style='padding:4px 10px;color:{MUTED};font-size:12px'>{help_text}</td></tr>"
            )
        if not rows:
            return f"<div style='color:{MUTED}'>No metrics yet.</div>"
        return "<table style='border-collapse:collapse;width:100%'>" + "".join(rows) + "</table>"

    # --- layout --------------------------------------------------------------------------------------
    def header_row(self) -> Any:
        model = card(self.model_info, self.models_table, title=self.domain.title, sizing_mode="stretch_width")
        training = card(
            pn.Row(self.training_switch, self.training_state, margin=0),
            pn.pane.HTML(
                f"<span style='color:{MUTED};font-size:12px'>Pause keeps events queued; resume catches up.</span>",
                margin=(0, 10),
            ),
            title="Real-time training",
            width=260,
            sizing_mode=None,
        )
        producer = card(
            pn.Row(self.producer_switch, self.producer_state, margin=0),
            self.producer_detail,
            self.rate_input,
            self.control_message,
            title="Producer",
            width=270,
            sizing_mode=None,
        )
        # The two control cards wrap together, under the model card when the window is narrow.
        return flow(grow(model, 460), grow(flow(training, producer), 560, max_width=560))

    def predict_tab(self) -> Any:
        buttons = flow(self.form.randomize_button, self.predict_button, self.model_select, margin=(4, 6))
        form = card(buttons, self.form_view(), title="Prediction request", sizing_mode="stretch_width")
        result = card(self.prediction_status, self.result_view(), title="Prediction", sizing_mode="stretch_width")
        # Side by side from ~1100 px of main area; the result goes under the form on a narrower window.
        return flow(
            grow(pn.Column(form, sizing_mode="stretch_width"), 520),
            grow(pn.Column(result, sizing_mode="stretch_width"), 420, max_width=640),
        )

    def metrics_tab(self) -> Any:
        return lazy(self._build_metrics_tab)

    def _build_metrics_tab(self) -> Any:
        """The metric charts (one figure per main metric), built when the tab is first opened."""
        self.charts = {
            m: MetricChart(m, color=PALETTE[i % len(PALETTE)]) for i, m in enumerate(self.domain.main_metrics)
        }
        self._draw_charts(self.live.domains[self.domain.name])
        charts = pn.GridBox(*[card(c.figure) for c in self.charts.values()], ncols=3, sizing_mode="stretch_width")
        return pn.Column(
            charts, card(self.all_metrics, title="All metrics (progressive validation)"), sizing_mode="stretch_width"
        )

    def layout(self) -> list[Any]:
        tabs = pn.Tabs(
            ("Predict", self.predict_tab()),
            ("Metric charts", self.metrics_tab()),
            *self.extra_tabs(),
            ("Compare", self.compare_tab()),
            sizing_mode="stretch_width",
            dynamic=True,  # other tabs are sent when opened: faster first load
        )
        self.refresh()
        pn.state.add_periodic_callback(self.refresh, period=1000)
        return [self.header_row(), self.cards.pane, tabs]

    def context(self) -> dict[str, Any]:
        """What the assistant sees of this page: the form's values and the last prediction."""
        return {
            "page": self.domain.name,
            "form": self.form.payload(),
            "errors": dict(self.form.errors),
            "last_prediction": self.last_reply.data if self.last_reply else None,
        }
