"""A use-case page's live metric cards, each with an info popover, and how a metric's value is written."""

from __future__ import annotations

import html
import math
from typing import Any

import panel as pn


def format_metric(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, int | float):
        v = float(value)
        if v.is_integer() and abs(v) >= 1:
            return f"{int(v):,}"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 100:
            return f"{v:,.1f}"
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
    return str(value)


CARDS_CSS = """
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.metric-card { position: relative; background: #fff; border: 1px solid #e5e7eb; border-radius: 12px;
  box-shadow: 0 1px 2px rgba(16,24,40,.05); padding: 10px 14px; min-width: 150px; }
.metric-card .name { font-size: 13px; color: #6b7280; font-weight: 600; display: flex; gap: 6px; align-items: center; }
.metric-card .value { font-size: 26px; font-weight: 700; color: #111827; font-variant-numeric: tabular-nums; }
.info { display: inline-flex; width: 16px; height: 16px; border-radius: 50%; border: 1px solid #9ca3af; color: #6b7280;
  font-size: 11px; align-items: center; justify-content: center; cursor: help; outline: none; }
.popover { display: none; position: absolute; left: 8px; top: 34px; z-index: 50; width: 270px; background: #111827;
  color: #f9fafb; font-size: 12px; font-weight: 400; line-height: 1.4; padding: 8px 10px; border-radius: 8px;
  box-shadow: 0 8px 24px rgba(0,0,0,.2); }
.info:hover + .popover, .info:focus + .popover { display: block; }
"""


class MetricCards:
    """Live metric cards, each with an info popover (what it measures, range, what good looks like).

    One HTML pane for all cards: a card per Bokeh widget would multiply the models a page load must build.
    """

    def __init__(self, names: list[str], help_texts: dict[str, str]) -> None:
        self.names = names
        self.help = help_texts
        self.pane = pn.pane.HTML("", stylesheets=[CARDS_CSS], sizing_mode="stretch_width", margin=(4, 6))
        self.update({})

    def update(self, values: dict[str, Any]) -> None:
        cards = []
        for name in self.names:
            help_text = html.escape(self.help.get(name) or name)
            cards.append(
                f"<div class='metric-card' data-metric='{html.escape(name)}'><div class='name'>{html.escape(name)}"
                f"<span class='info' tabindex='0' aria-label='About {html.escape(name)}'>i</span>"
                f"<span class='popover' role='tooltip'>{help_text}</span></div>"
                f"<div class='value'>{html.escape(format_metric(values.get(name)))}</div></div>"
            )
        text = "<div class='cards'>" + "".join(cards) + "</div>"
        if self.pane.object != text:
            self.pane.object = text
