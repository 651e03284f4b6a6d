"""ui.panel_adapters relies on private Panel names: these fail if Panel changes them underneath.

The page test serves a Fast template with an HTML pane (what every dashboard page is) from a Panel server in a
thread: Panel's defaults put the Google font and the MathJax bundle in it, the adapters take them out.
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Iterator
from typing import Any

import panel as pn
import pytest
import requests
from panel.io import resources
from panel.template import FastListTemplate
from panel.theme.fast import Fast

from coelho.settings import free_port
from ui import panel_adapters

# Panel's own values, captured when the tests are collected (before anything in this process applies the adapters)
PANEL_USE_MATHJAX = resources._panel_use_mathjax
FAST_RESOURCES = Fast._resources


@pytest.fixture
def pristine_panel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Panel as shipped, and put back as it was after the test (the adapters change it for the whole process)."""
    monkeypatch.setattr(resources, "_panel_use_mathjax", PANEL_USE_MATHJAX)
    monkeypatch.setattr(Fast, "_resources", FAST_RESOURCES)
    monkeypatch.setattr(pn.config, "design", Fast)  # as pn.extension(design="fast") in ui.app.configure_panel


def test_fast_design_still_declares_its_web_font_in_resources() -> None:
    font = FAST_RESOURCES.get("font")
    assert isinstance(font, dict) and font, FAST_RESOURCES
    assert all("fonts.googleapis.com" in url for url in font.values()), font
    assert FAST_RESOURCES.get("js_modules"), "Fast's other resources must stay"


def test_panel_still_has_its_html_mathjax_check() -> None:
    assert list(inspect.signature(PANEL_USE_MATHJAX).parameters) == ["roots"]
    # looked up at call time by bundle_resources, or replacing it changes nothing
    assert "_panel_use_mathjax" in resources.bundle_resources.__code__.co_names
    html = pn.pane.HTML("<b>x</b>").get_root()
    assert PANEL_USE_MATHJAX([html]) is True


def test_adapters_change_only_what_they_name(pristine_panel: None) -> None:
    assert panel_adapters.drop_fast_web_font()
    assert Fast._resources["font"] == {}
    assert {k: v for k, v in Fast._resources.items() if k != "font"} == {
        k: v for k, v in FAST_RESOURCES.items() if k != "font"
    }
    assert FAST_RESOURCES["font"], "Panel's own dict is copied, not emptied in place"
    assert panel_adapters.skip_mathjax_for_html_panes()
    assert resources._panel_use_mathjax([pn.pane.HTML("<b>x</b>").get_root()]) is False


def test_adapters_leave_panel_alone_when_its_names_are_gone(
    pristine_panel: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(resources, "_panel_use_mathjax")
    assert not panel_adapters.skip_mathjax_for_html_panes()
    assert not hasattr(resources, "_panel_use_mathjax")
    monkeypatch.setattr(Fast, "_resources", {"js_modules": {}})
    assert not panel_adapters.drop_fast_web_font()
    assert Fast._resources == {"js_modules": {}}


@pytest.fixture
def served_page(pristine_panel: None) -> Iterator[Any]:
    """GET of a page served by Panel: a Fast template like ui.layout.page_template's, with an HTML pane."""

    def app() -> Any:
        return FastListTemplate(title="t", main=[pn.pane.HTML("<b>x</b>")], font="system-ui, sans-serif")

    port = free_port()
    server = pn.serve(
        {"/": app},
        port=port,
        address="127.0.0.1",
        show=False,
        threaded=True,
        websocket_origin=[f"127.0.0.1:{port}"],
        autoreload=False,
    )
    url = f"http://127.0.0.1:{port}/"

    def get() -> str:
        deadline = time.monotonic() + 20
        while True:
            try:
                resp = requests.get(url, timeout=10)
                resp.raise_for_status()
                return resp.text
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    try:
        yield get
    finally:
        server.stop()


def _links(page: str) -> list[str]:
    return re.findall(r'(?:href|src)="([^"]+)"', page)


def test_served_page_has_no_web_font_and_no_mathjax(served_page: Any) -> None:
    before = _links(served_page())
    # Panel's defaults: if these fail, Panel no longer adds them and the adapters can go
    assert any("fonts.googleapis.com" in link for link in before), before
    assert any("bokeh-mathjax" in link for link in before), before

    assert panel_adapters.drop_fast_web_font() and panel_adapters.skip_mathjax_for_html_panes()
    after = _links(served_page())  # resources are resolved per request
    assert not [link for link in after if "fonts.googleapis.com" in link or "opensans" in link.lower()], after
    assert not [link for link in after if "mathjax" in link], after
    assert any("fast-components" in link for link in after), after  # the rest of the Fast design is still there
    assert any("bokeh.min.js" in link for link in after), after


def test_configure_panel_applies_both_adapters(pristine_panel: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from ui import app

    monkeypatch.setattr(pn, "extension", lambda *args, **kwargs: None)  # its global settings are not under test
    app.configure_panel()
    assert Fast._resources["font"] == {}
    assert resources._panel_use_mathjax([pn.pane.HTML("<b>x</b>").get_root()]) is False


def test_the_tabulator_theme_is_in_panels_bundle() -> None:
    """The SQL page links the table theme from Panel's bundled files; if Panel moves them, this fails."""
    from pathlib import Path

    from ui.panel_adapters import BUNDLED_STATIC, tabulator_stylesheet

    relative = tabulator_stylesheet().removeprefix(BUNDLED_STATIC + "/")
    assert (Path(pn.__file__).parent / "dist" / "bundled" / relative).is_file(), relative
