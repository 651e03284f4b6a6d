"""Estimated Time of Arrival: route map (origin, destination, line), random coordinates, distance, ETA in s and min."""

from __future__ import annotations

from typing import Any

import panel as pn

from coelho.settings import Settings
from eventing.domains import ETA
from ui.charts import GREEN, RED
from ui.layout import MUTED
from ui.live import DomainLive
from ui.maps import PointMap
from ui.pages.domain_page import DomainPage
from ui.sample import haversine_km, sample_payload

COORDINATES = ("origin.lat", "origin.lon", "destination.lat", "destination.lon")


class EtaPage(DomainPage):
    route = "/eta"
    form_columns = 2

    def __init__(self, settings: Settings) -> None:
        self.map = PointMap("Trip route (longitude / latitude)", route=True, height=330)
        self.eta = pn.pane.HTML("", sizing_mode="stretch_width", margin=(0, 10))
        self.distance = pn.pane.HTML("", sizing_mode="stretch_width", margin=(0, 10))
        super().__init__(ETA, settings)
        self.random_coordinates = pn.widgets.Button(name="Random coordinates", button_style="outline", width=200)
        self.random_coordinates.on_click(lambda event: self.randomize_coordinates())
        self.form.on_change(self._maybe_redraw)
        self.clear_prediction(initial=True)
        self.redraw()

    # --- coordinates and map -------------------------------------------------------------------------
    def randomize_coordinates(self) -> None:
        """New origin and destination (with the generator's matching road distance and naive estimate)."""
        sample = sample_payload(self.domain, self.form.rng)
        for path in COORDINATES:
            part, _, leaf = path.partition(".")
            self.form.set_value(path, sample[part][leaf])
        straight = self.straight_km()
        road = sample.get("estimated_distance_km")
        if straight is not None and (not isinstance(road, int | float) or road < straight):
            road = round(straight * 1.3, 2)  # the road is never shorter than the straight line
        if road is not None:
            self.form.set_value("estimated_distance_km", road)
        naive = sample.get("initial_estimated_travel_time_seconds")
        if naive is not None:
            self.form.set_value("initial_estimated_travel_time_seconds", naive)
        self.clear_prediction()
        self.redraw()

    def straight_km(self) -> float | None:
        values = [self.form.widgets[p].value for p in COORDINATES]
        if any(v is None for v in values):
            return None
        return haversine_km(*[float(v) for v in values])

    def _maybe_redraw(self, path: str) -> None:
        if path == "*" or path in COORDINATES or path == "estimated_distance_km":
            self.redraw()

    def redraw(self) -> None:
        o_lat, o_lon, d_lat, d_lon = (self.form.widgets[p].value for p in COORDINATES)
        self.map.update([("Origin", o_lat, o_lon, GREEN), ("Destination", d_lat, d_lon, RED)])
        straight = self.straight_km()
        road = self.form.widgets["estimated_distance_km"].value
        self.distance.object = (
            "<div class='trip-distance' style='display:flex;gap:18px;color:#374151;font-size:14px'>"
            f"<span>Straight line: <b>{'—' if straight is None else f'{straight:,.2f} km'}</b></span>"
            f"<span>Road estimate: <b>{'—' if road is None else f'{float(road):,.2f} km'}</b></span></div>"
        )

    # --- prediction ----------------------------------------------------------------------------------
    def show_prediction(self, data: dict[str, Any]) -> None:
        """`data`: predict-one's reply, checked against ETA.reply_fields() by the predict client."""
        seconds, minutes = float(data["eta_seconds"]), float(data["eta_minutes"])
        self.eta.object = (
            "<div class='eta-result' style='display:flex;gap:10px'>"
            "<div style='flex:1;text-align:center;padding:10px;border-radius:10px;background:#eff4ff'>"
            f"<div style='font-size:12px;color:{MUTED}'>ETA (seconds)</div><div style='font-size:28px;font-weight:800;color:#1e3a8a'>{seconds:,.0f} s</div></div>"
            "<div style='flex:1;text-align:center;padding:10px;border-radius:10px;background:#eff4ff'>"
            f"<div style='font-size:12px;color:{MUTED}'>ETA (minutes)</div><div style='font-size:28px;font-weight:800;color:#1e3a8a'>{minutes:,.1f} min</div></div>"
            "</div>"
        )

    def clear_prediction(self, initial: bool = False) -> None:
        if not initial:
            super().clear_prediction()
        self.eta.object = (
            f"<div style='color:{MUTED};text-align:center;padding:14px'>Press <b>Predict</b> for this trip's ETA.</div>"
        )

    def result_view(self) -> Any:
        return pn.Column(self.eta, self.distance, sizing_mode="stretch_width")

    def predict_tab(self) -> Any:
        tab = super().predict_tab()
        from ui.layout import card

        map_card = card(
            pn.Row(self.random_coordinates, margin=(0, 6)),
            pn.pane.Bokeh(self.map.figure, sizing_mode="stretch_width"),
            title="Route",
        )
        # Put the map under the result, beside the form.
        tab[1].append(map_card)
        return tab

    def refresh_extra(self, live: DomainLive) -> None:
        pass


def build(settings: Settings) -> tuple[list[Any], Any]:
    page = EtaPage(settings)
    return page.layout(), page.context
