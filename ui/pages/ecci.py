"""E-Commerce Customer Interactions: predicted cluster, customer map, cluster behaviour, cluster analytics."""

from __future__ import annotations

import html
import json
import time
from typing import Any

import panel as pn

from coelho.settings import Settings
from eventing.domains import ECCI
from eventing.domains.ecci import PROFILE_FIELDS
from ui.charts import BLUE, PALETTE, BarChart, HtmlBars, StackedBarChart
from ui.layout import MUTED, card, flow, grow, lazy
from ui.live import DomainLive
from ui.maps import PointMap
from ui.pages.domain_page import DomainPage

FEATURE_LABELS = {path: path.split(".")[-1].replace("_", " ") for path in PROFILE_FIELDS}


def _is_numeric(profile: dict[str, Any]) -> bool:
    return isinstance(profile, dict) and "mean" in profile


def _cluster_key(cluster: Any) -> str:
    return str(cluster)


class EcommercePage(DomainPage):
    route = "/ecci"

    def __init__(self, settings: Settings) -> None:
        self.cluster = pn.pane.HTML("", sizing_mode="stretch_width", margin=(0, 10))
        self.map = PointMap("Customer location (longitude / latitude)", height=280)
        self.behaviour_feature = pn.widgets.Select(
            name="Cluster behaviour: feature",
            options={v: k for k, v in FEATURE_LABELS.items()},
            width=260,
            css_classes=["behaviour-feature"],
        )
        self.behaviour = HtmlBars()  # HTML, not a Bokeh figure: cheaper to build and to update per prediction
        self.behaviour_note = pn.pane.HTML("", margin=(0, 10))
        # The Cluster Analytics tab (its charts and selector) is built when it is first opened.
        self.sizes: BarChart | None = None
        self.analytics_feature: Any = None
        self.distribution_pane: Any = None
        self.predicted: str | None = None
        self._clusters_seen = ""
        self._analytics_at = 0.0
        super().__init__(ECCI, settings)
        self.behaviour_feature.param.watch(lambda e: self.draw_behaviour(), "value")
        self.form.on_change(self._maybe_redraw)
        self.clear_prediction(initial=True)
        self.redraw()

    def card_metrics(self) -> list[str]:
        return [*self.domain.main_metrics, "n_clusters", "n_micro_clusters"]

    def _maybe_redraw(self, path: str) -> None:
        if path == "*" or path.startswith("location."):
            self.redraw()

    def redraw(self) -> None:
        lat, lon = self.form.widgets["location.lat"].value, self.form.widgets["location.lon"].value
        self.map.update([("Customer", lat, lon, BLUE)])

    # --- prediction ----------------------------------------------------------------------------------
    def show_prediction(self, data: dict[str, Any]) -> None:
        """`data`: predict-one's reply, checked against ECCI.reply_fields() by the predict client."""
        cluster, description = data["cluster"], data["cluster_description"]
        self.predicted = None if cluster is None else _cluster_key(cluster)
        shown = "none yet" if cluster is None else f"Cluster {html.escape(str(cluster))}"
        color = PALETTE[int(cluster) % len(PALETTE)] if isinstance(cluster, int) else "#1e3a8a"
        self.cluster.object = (
            "<div class='cluster-result' style='padding:10px;border-radius:10px;background:#eff4ff'>"
            f"<div style='font-size:12px;color:{MUTED}'>Predicted segment</div>"
            f"<div style='font-size:26px;font-weight:800;color:{color}'>{shown}</div>"
            f"<div style='font-size:13px;color:#374151;margin-top:4px'>{html.escape(str(description))}</div></div>"
        )
        self.later(self.draw_behaviour)  # the cluster first; its behaviour chart right after

    def clear_prediction(self, initial: bool = False) -> None:
        if not initial:
            super().clear_prediction()
        self.predicted = None
        self.cluster.object = f"<div style='color:{MUTED};text-align:center;padding:14px'>Press <b>Predict</b> to find this interaction's segment.</div>"
        self.draw_behaviour()

    def result_view(self) -> Any:
        behaviour = pn.Column(
            self.behaviour_feature,
            self.behaviour_note,
            self.behaviour.pane,
            sizing_mode="stretch_width",
        )
        return pn.Column(
            self.cluster,
            pn.pane.Bokeh(self.map.figure, sizing_mode="stretch_width"),
            pn.pane.HTML("<h4 style='margin:8px 0 0 0'>Cluster behaviour</h4>", margin=(0, 10)),
            behaviour,
            sizing_mode="stretch_width",
        )

    # --- cluster behaviour and analytics -------------------------------------------------------------
    def draw_behaviour(self) -> None:
        clusters = self.live.domains[self.domain.name].clusters
        feature = self.behaviour_feature.value
        profile = clusters.get(self.predicted or "", {}).get(feature) if self.predicted else None
        if not profile:
            self.behaviour.update({})
            self.behaviour_note.object = f"<span style='color:{MUTED};font-size:12px'>Predict to see what this cluster's interactions look like.</span>"
            return
        if _is_numeric(profile):
            self.behaviour.label = FEATURE_LABELS[feature]
            self.behaviour.update({k: profile[k] for k in ("min", "mean", "max")})
            self.behaviour_note.object = (
                f"<span style='font-size:12px;color:#374151'>mean {profile['mean']:,.2f} ± {profile['std']:,.2f}</span>"
            )
        else:
            self.behaviour.label = "share of the cluster's events"
            self.behaviour.update(profile, colors=[PALETTE[i % len(PALETTE)] for i in range(len(profile))])
            self.behaviour_note.object = f"<span style='font-size:12px;color:#374151'>Top {len(profile)} values of {html.escape(FEATURE_LABELS[feature])} in cluster {html.escape(self.predicted or '')}</span>"

    def draw_analytics(self, force: bool = False) -> None:
        if self.sizes is None:  # the tab was never opened
            return
        clusters = self.live.domains[self.domain.name].clusters
        signature = json.dumps([clusters, self.analytics_feature.value], sort_keys=True, default=str)
        if signature == self._clusters_seen and not force:
            return
        self._clusters_seen = signature
        ids = sorted(clusters, key=lambda c: (len(c), c))
        self.sizes.update(
            {c: clusters[c].get("samples", 0) for c in ids},
            colors=[PALETTE[int(c) % len(PALETTE)] if c.lstrip("-").isdigit() else BLUE for c in ids],
        )
        feature = self.analytics_feature.value
        profiles = {c: clusters[c].get(feature) for c in ids if clusters[c].get(feature)}
        groups = [str(c) for c in profiles]
        if profiles and all(_is_numeric(p) for p in profiles.values()):
            fig = StackedBarChart(f"Mean {FEATURE_LABELS[feature]} per cluster", height=330, x_label="cluster").build(
                groups, {"mean": [p["mean"] for p in profiles.values()]}
            )
        else:
            categories: list[str] = []
            for p in profiles.values():
                categories += [k for k in p if k not in categories]
            shares = {cat: [float(p.get(cat, 0.0)) for p in profiles.values()] for cat in categories}
            fig = StackedBarChart(
                f"{FEATURE_LABELS[feature].capitalize()}: share of each cluster's events", height=330, x_label="cluster"
            ).build(groups, shares)
        self.distribution_pane.object = fig

    def extra_tabs(self) -> list[tuple[str, Any]]:
        return [("Cluster Analytics", lazy(self._build_analytics_tab))]

    def _build_analytics_tab(self) -> Any:
        self.sizes = BarChart("Samples per cluster", height=300, y_label="events", x_label="cluster")
        self.analytics_feature = pn.widgets.Select(
            name="Feature distribution across clusters",
            options={v: k for k, v in FEATURE_LABELS.items()},
            width=300,
            css_classes=["analytics-feature"],
        )
        self.distribution_pane = pn.pane.Bokeh(
            StackedBarChart("Feature distribution per cluster", height=330).figure, sizing_mode="stretch_width"
        )
        self.analytics_feature.param.watch(lambda e: self.draw_analytics(force=True), "value")
        self._analytics_at = time.monotonic()
        self.draw_analytics(force=True)
        return pn.Column(
            flow(
                grow(
                    card(pn.pane.Bokeh(self.sizes.figure, sizing_mode="stretch_width"), title="Samples per cluster"),
                    420,
                ),
                grow(card(self.analytics_feature, self.distribution_pane, title="A feature across clusters"), 420),
            ),
            sizing_mode="stretch_width",
        )

    def refresh_extra(self, live: DomainLive) -> None:
        # Rebuilding the stacked chart is the page's most expensive update: at most every 5 s.
        if time.monotonic() - self._analytics_at >= 5.0:
            self._analytics_at = time.monotonic()
            self.draw_analytics()
        if self.predicted:
            self.draw_behaviour()


def build(settings: Settings) -> tuple[list[Any], Any]:
    page = EcommercePage(settings)
    return page.layout(), page.context
