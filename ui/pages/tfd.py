"""Transaction Fraud Detection: fraud gauge, fraud % / not-fraud %, confusion matrix heatmap, classification report."""

from __future__ import annotations

import html
from typing import Any

import panel as pn

from coelho.settings import Settings
from eventing.domains import TFD
from ui.charts import GREY, RISK_ZONES, ConfusionMatrixChart, FraudGauge
from ui.layout import MUTED, card, flow, grow, lazy
from ui.live import DomainLive
from ui.maps import TransactionMap
from ui.pages.domain_page import DomainPage

CLASS_NAMES = {"False": "legit", "True": "fraud"}


def classification_report(matrix: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Per-class precision, recall, F1 and support from a confusion matrix {truth: {predicted: n}}.

    >>> rows = classification_report({"False": {"False": 90, "True": 10}, "True": {"False": 2, "True": 8}})
    >>> [(r["class"], round(r["precision"], 3), round(r["recall"], 2), r["support"]) for r in rows[:2]]
    [('legit', 0.978, 0.9, 100), ('fraud', 0.444, 0.8, 10)]
    """
    labels = ["False", "True"]
    rows: list[dict[str, Any]] = []
    total = sum(sum(r.values()) for r in matrix.values())
    correct = 0.0
    for label in labels:
        tp = float(matrix.get(label, {}).get(label, 0))
        predicted = sum(float(matrix.get(t, {}).get(label, 0)) for t in matrix)
        support = sum(float(v) for v in matrix.get(label, {}).values())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        correct += tp
        rows.append(
            {"class": CLASS_NAMES[label], "precision": precision, "recall": recall, "f1": f1, "support": int(support)}
        )
    if total:
        per_class = list(rows)
        for avg in ("macro avg", "weighted avg"):
            weights = [r["support"] / total if avg == "weighted avg" else 1 / len(per_class) for r in per_class]
            rows.append(
                {
                    "class": avg,
                    "support": int(total),
                    **{
                        m: sum(w * r[m] for w, r in zip(weights, per_class, strict=True))
                        for m in ("precision", "recall", "f1")
                    },
                }
            )
        rows.append(
            {"class": "accuracy", "precision": None, "recall": None, "f1": correct / total, "support": int(total)}
        )
    return rows


def report_html(rows: list[dict[str, Any]]) -> str:
    if not rows or not any(r["support"] for r in rows):
        return f"<div style='color:{MUTED}'>No labelled transactions scored yet.</div>"

    def cell(v: Any) -> str:
        return "" if v is None else f"{v:.3f}"

    head = "".join(
        f"<th style='padding:6px 12px;text-align:right'>{h}</th>" for h in ("Precision", "Recall", "F1", "Support")
    )
    body = "".join(
        f"<tr style='border-top:1px solid #eef0f3'><td style='padding:6px 12px;font-weight:600'>{html.escape(r['class'])}</td>"
        f"<td style='padding:6px 12px;text-align:right'>{cell(r['precision'])}</td>"
        f"<td style='padding:6px 12px;text-align:right'>{cell(r['recall'])}</td>"
        f"<td style='padding:6px 12px;text-align:right'>{cell(r['f1'])}</td>"
        f"<td style='padding:6px 12px;text-align:right'>{r['support']:,}</td></tr>"
        for r in rows
    )
    return (
        "<table class='classification-report' style='border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums'>"
        f"<thead><tr><th style='padding:6px 12px;text-align:left'>Class</th>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def risk_source_html(live: DomainLive) -> str:
    """Which model coloured the map, or why it could not.

    >>> from ui.live import DomainLive
    >>> text = risk_source_html(DomainLive("tfd", risk_model="logreg_rus", risk_events_learned=1200))
    >>> "Risk from logreg_rus, the live champion, after 1,200 events learned" in text
    True
    >>> "cannot be read" in risk_source_html(DomainLive("tfd", risk_problem="StateKeyMissing: no key"))
    True
    """
    if live.risk_problem:
        return (
            f"<div style='color:#b42318;font-size:12px'>No risk colours: the champion's model state cannot be read "
            f"here ({html.escape(live.risk_problem)}).</div>"
        )
    if not live.risk_model:
        return ""
    return (
        f"<div style='color:{MUTED};font-size:12px'>Risk from {html.escape(live.risk_model)}, the live champion, after "
        f"{live.risk_events_learned:,} events learned.</div>"
    )


class FraudPage(DomainPage):
    route = "/tfd"

    def __init__(self, settings: Settings) -> None:
        self.gauge = FraudGauge()
        self.split = pn.pane.HTML("", sizing_mode="stretch_width", margin=(0, 10))
        self.matrix: ConfusionMatrixChart | None = None  # built with its tab, when first opened
        self.map: TransactionMap | None = None  # built with its tab, when first opened
        self._map_data: list[dict[str, Any]] | None = None  # the poller's list the map shows
        self.map_source = pn.pane.HTML("", sizing_mode="stretch_width", margin=(0, 10), css_classes=["risk-source"])
        self.report = pn.pane.HTML("", sizing_mode="stretch_width")
        super().__init__(TFD, settings)
        self.clear_prediction(initial=True)

    def result_view(self) -> Any:
        legend = " ".join(
            f"<span style='display:inline-flex;align-items:center;gap:4px;margin-right:10px;font-size:12px;color:#374151'>"
            f"<span style='width:10px;height:10px;border-radius:2px;background:{c}'></span>{n} {lo:.0%}–{hi:.0%}</span>"
            for n, lo, hi, c in RISK_ZONES
        )
        return pn.Column(
            self.gauge.pane,
            pn.pane.HTML(f"<div style='text-align:center'>{legend}</div>", sizing_mode="stretch_width"),
            self.split,
            sizing_mode="stretch_width",
        )

    def show_prediction(self, data: dict[str, Any]) -> None:
        """`data`: predict-one's reply, checked against TFD.reply_fields() by the predict client."""
        probability = float(data["fraud_probability"])
        self.gauge.update(probability)
        self._show_on_map(probability)
        level = str(data["risk_level"]).upper()
        verdict = "FRAUD" if data["is_fraud"] else "NOT FRAUD"
        self.split.object = (
            "<div class='fraud-result' style='display:flex;gap:10px;justify-content:center'>"
            f"<div style='flex:1;text-align:center;padding:8px;border-radius:10px;background:#fef2f2'>"
            f"<div style='font-size:12px;color:{MUTED}'>Fraud</div><div style='font-size:24px;font-weight:800;color:#d1382f'>{probability:.1%}</div></div>"
            f"<div style='flex:1;text-align:center;padding:8px;border-radius:10px;background:#ecfdf3'>"
            f"<div style='font-size:12px;color:{MUTED}'>Not fraud</div><div style='font-size:24px;font-weight:800;color:#2e9d5b'>{1 - probability:.1%}</div></div>"
            f"<div style='flex:1;text-align:center;padding:8px;border-radius:10px;background:#f3f4f6'>"
            f"<div style='font-size:12px;color:{MUTED}'>Verdict · risk</div><div style='font-size:16px;font-weight:800;color:#111827;margin-top:5px'>{verdict} · {html.escape(level)}</div></div>"
            "</div>"
        )

    def clear_prediction(self, initial: bool = False) -> None:
        if not initial:
            super().clear_prediction()
        self.gauge.update(None)
        self._show_on_map(None)
        self.split.object = (
            f"<div style='color:{MUTED};text-align:center'>Press <b>Predict</b> to score this transaction.</div>"
        )

    def extra_tabs(self) -> list[tuple[str, Any]]:
        return [("Confusion matrix & report", lazy(self._build_matrix_tab)), ("Map", lazy(self._build_map_tab))]

    def _build_map_tab(self) -> Any:
        """Where the latest transactions happened, each in the colour of the fraud probability the live champion
        gives it, ringed by its label once that arrived; and the form's transaction."""
        self.map = TransactionMap()
        self.live.want_map(self.domain.name)
        self._draw_map(self.live.domains[self.domain.name])
        self._show_on_map(float(self.last_reply.data["fraud_probability"]) if self.last_reply else None)

        def dot(fill: str, text: str, ring: str = "transparent", width: int = 0, shape: str = "50%") -> str:
            return (
                f"<span style='display:inline-flex;align-items:center;gap:4px;margin-right:12px'><span style='width:10px;"
                f"height:10px;border-radius:{shape};background:{fill};box-shadow:0 0 0 {width}px {ring}'></span>"
                f"{text}</span>"
            )

        zones = "".join(dot(c, f"{n.lower()}", shape="2px") for n, _, _, c in RISK_ZONES)
        note = pn.pane.HTML(
            "<div class='map-legend' style='color:#374151;font-size:12px'>The latest 300 transactions logged, filled "
            "with the <b>fraud probability the live champion gives each</b> (colour bar below the map; grey: not "
            f"scored). Label, once it arrived: {dot(GREY, 'fraud (dark ring)', TransactionMap.FRAUD_RING, 2)}"
            f"{dot(GREY, 'legit (white ring)', '#9ca3af', 1)}{dot(GREY, 'no ring: not arrived yet')}· a red dot "
            "with a white ring is a false alarm, a green one with a dark ring a missed fraud. ◆ the Predict tab's "
            f"transaction, by its risk: {zones}</div>",
            sizing_mode="stretch_width",
            margin=(0, 10),
        )
        foot = pn.pane.HTML(
            f"<div style='color:{MUTED};font-size:11px'>Countries and cities: Natural Earth (public domain), drawn "
            "offline; set COELHO_TILE_URL for map tiles.</div>",
            sizing_mode="stretch_width",
            margin=(0, 10),
        )
        return card(
            pn.pane.Bokeh(self.map.figure, sizing_mode="stretch_width"),
            note,
            self.map_source,
            foot,
            title="Where transactions happen, by predicted risk",
        )

    def _draw_map(self, live: DomainLive) -> None:
        if self.map is None:
            return
        self.live.want_map(self.domain.name)
        if live.transactions is not self._map_data:  # the map thread hands over a new list when it read the log again
            self._map_data = live.transactions
            self.map.update(live.transactions)
            self.map_source.object = risk_source_html(live)

    def _show_on_map(self, probability: float | None) -> None:
        if self.map is None:
            return
        location = self.form.payload().get("location") or {}
        self.map.show_transaction(location.get("lat"), location.get("lon"), probability)

    def _build_matrix_tab(self) -> Any:
        self.matrix = ConfusionMatrixChart(labels=("legit", "fraud"))
        self.refresh_extra(self.live.domains[self.domain.name])
        return flow(
            grow(card(pn.pane.Bokeh(self.matrix.figure, sizing_mode="stretch_width"), title="Confusion matrix"), 420),
            grow(card(self.report, title="Classification report (threshold 0.5)"), 420),
        )

    def refresh_extra(self, live: DomainLive) -> None:
        self._draw_map(live)
        if self.matrix is None:  # the tab was never opened
            return
        raw = live.metrics.get("ConfusionMatrix") or {}
        matrix = {CLASS_NAMES.get(t, t): {CLASS_NAMES.get(p, p): n for p, n in row.items()} for t, row in raw.items()}
        self.matrix.update(matrix)
        self.report.object = report_html(classification_report(raw))


def build(settings: Settings) -> tuple[list[Any], Any]:
    page = FraudPage(settings)
    return page.layout(), page.context
