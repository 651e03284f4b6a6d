"""The Compare tab's chart: one metric of the two compared models over the same event axis, the domain's log
position (seq), so a model started later is drawn where it started; a registered version is a dashed marker at the
position it was checkpointed at."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bokeh.core.property.vectorization import value as bokeh_value

from ui.charts import PALETTE, bm, figure, style_figure

COLORS = (PALETTE[0], PALETTE[1])


class PairedCurves:
    """Two lines (A and B) of one metric over log positions, with a marker per registered version compared."""

    def __init__(self, height: int = 260) -> None:
        fig = figure(height=height, sizing_mode="stretch_width", toolbar_location=None, tools="")
        style_figure(fig)
        fig.xaxis.axis_label = "log position (events of the domain, the same for both models)"
        self.sources = [bm.ColumnDataSource({"x": [], "y": []}) for _ in COLORS]
        self.lines = [
            fig.line("x", "y", source=source, line_width=2, color=color, legend_label=label)
            for source, color, label in zip(self.sources, COLORS, ("A", "B"), strict=True)
        ]
        fig.legend.location = "bottom_right"
        fig.legend.click_policy = "hide"
        fig.add_tools(bm.HoverTool(tooltips=[("position", "@x{0,0}"), ("value", "@y{0.0000}")]))
        self.markers = [
            bm.Span(location=0, dimension="height", line_color=color, line_dash="dashed", line_width=1.5, visible=False)
            for color in COLORS
        ]
        for span in self.markers:
            fig.add_layout(span)
        self.figure = fig

    def update(
        self,
        metric: str,
        labels: Sequence[str],
        curves: Sequence[Sequence[tuple[float, float]]],
        marks: Sequence[float | None] = (None, None),
    ) -> None:
        """Draw `curves` (A, B) of `metric`, named by `labels`; `marks` are the log positions of frozen versions."""
        fig: Any = self.figure
        fig.title.text = f"{metric}: A and B on the same events"
        fig.yaxis.axis_label = metric
        legend_items: Any = fig.legend[0].items
        for i, (source, points) in enumerate(zip(self.sources, curves, strict=True)):
            data = {"x": [p[0] for p in points], "y": [p[1] for p in points]}
            if data != source.data:
                source.data = data
            if i < len(legend_items):
                legend_items[i].label = bokeh_value(labels[i])
        for span, at in zip(self.markers, marks, strict=True):
            span.visible = at is not None
            if at is not None:
                span.location = at
