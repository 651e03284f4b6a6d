"""The dashboard's only uses of private Panel names, one function each (the first two called by
ui.app.configure_panel; `tabulator_stylesheet` by the SQL page).

Neither has a public switch in Panel: no config option, template or `pn.extension` parameter removes the Fast
design's web font or Panel's "an HTML pane may hold LaTeX" MathJax check (a template's `font_url` does not; the
font comes from the design's own resource list). tests/ui/test_library_adapters.py fails if Panel changes either.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

log = logging.getLogger("coelho.ui")


def drop_fast_web_font() -> bool:
    """Stop pages with the Fast design from linking the Google Fonts stylesheet for Open Sans. Returns whether it could.

    Private API used: `panel.theme.fast.Fast._resources`, a class-level dict whose "font" entry
    ({"opensans": "https://fonts.googleapis.com/css?family=Open+Sans"}) Panel adds to every page as a stylesheet,
    both through the template's design and through `pn.config.design`. There is no internet here: that
    render-blocking request can only fail or time out. Our templates set their own `font` (system fonts),
    so Open Sans is never used anyway. The dict is replaced with a copy whose "font" entry is empty.

    Fallback: if the attribute is gone or has another shape, nothing is changed and a warning is logged. Pages
    then link the font again: slower to load here, text unchanged.
    """
    from panel.theme.fast import Fast

    current: Any = getattr(Fast, "_resources", None)
    if not isinstance(current, dict) or not isinstance(current.get("font"), dict):
        log.warning("panel: Fast._resources has no 'font' entry any more; pages may link Google Fonts again")
        return False
    Fast._resources = {**current, "font": {}}
    return True


def _no_mathjax_for_html(roots: Any) -> bool:
    """Replacement for Panel's check: an HTML pane never asks for MathJax (Bokeh's own checks still apply)."""
    return False


def skip_mathjax_for_html_panes() -> bool:
    """Stop Panel adding bokeh-mathjax.min.js to every page that has an HTML pane. Returns whether it could.

    Private API used: `panel.io.resources._panel_use_mathjax(roots)`, which `bundle_resources` (called per page
    request) looks up as a module global. It answers True whenever a page holds a Panel HTML model, in case the
    HTML contains LaTeX, and the page then loads the 1.8 MB MathJax bundle, its largest script. None of our
    panes holds LaTeX; not parsing it saves ~0.2-0.5 s of every page load here. Bokeh's own check (math text
    models) and an explicit `pn.extension("mathjax")` still load it. The function is replaced with one that
    answers False.

    Fallback: if the function is gone, takes other arguments or is no longer consulted by `bundle_resources`,
    nothing is changed and a warning is logged. Pages then load MathJax again: slower, otherwise the same.
    """
    from panel.io import resources

    check = getattr(resources, "_panel_use_mathjax", None)
    code = getattr(getattr(resources, "bundle_resources", None), "__code__", None)
    try:
        params = list(inspect.signature(check).parameters) if callable(check) else []
    except (TypeError, ValueError):
        params = []
    consulted = code is not None and "_panel_use_mathjax" in code.co_names
    if params != ["roots"] or not consulted:
        log.warning("panel: resources._panel_use_mathjax changed; pages with HTML panes may load MathJax again")
        return False
    resources._panel_use_mathjax = _no_mathjax_for_html
    return True


BUNDLED_STATIC = "/static/extensions/panel/bundled"  # where a served Panel app finds its bundled `dist/bundled`


def tabulator_stylesheet() -> str:
    """The table widget's theme as the dashboard serves it from Panel's bundle: Panel links it from its CDN, which
    is not reachable offline. THEME_PATH and the bundle's layout are Panel internals (checked by
    tests/ui/test_library_adapters.py).

    >>> tabulator_stylesheet().endswith("tabulator_simple.min.css")
    True
    """
    from panel.models.tabulator import THEME_PATH

    return f"{BUNDLED_STATIC}/datatabulator/{THEME_PATH}tabulator_simple.min.css"
