"""The dashboard's details in a real browser, in one browser session: every page lays out inside the window at
laptop and desktop widths (nothing cut off at the right, no clipped placeholder), with screenshots of every page.

Screenshots of every page at 1440 px go to test-artifacts/screenshots/layout-<page>-1440.png.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.ui.test_dashboard import INTERACTIVE, SCREENSHOTS

pytestmark = [pytest.mark.browser, pytest.mark.stack]

WIDTHS = (1280, 1440, 1920)
SCREENSHOT_WIDTH = 1440

# Every visible element (inside Bokeh's shadow roots too) must lie within the window horizontally, the page must
# not scroll sideways, and an empty input's placeholder must fit its box (a textarea's on its wrapped lines).
OVERFLOWS = """() => {
  const vw = document.documentElement.clientWidth;
  const out = [];
  const canvas = document.createElement("canvas").getContext("2d");
  const describe = (el) => {
    let s = el.tagName.toLowerCase();
    if (el.className && typeof el.className === "string") s += "." + el.className.trim().split(/\\s+/).slice(0, 3).join(".");
    const text = (el.innerText || el.placeholder || "").trim().slice(0, 40).replace(/\\s+/g, " ");
    return text ? `${s} "${text}"` : s;
  };
  const visible = (el) => {
    const style = getComputedStyle(el);
    if (style.display === "none" || style.visibility === "hidden") return false;
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0;
  };
  const walk = (root) => {
    for (const el of root.querySelectorAll("*")) {
      if (el.shadowRoot) walk(el.shadowRoot);
      if (el.classList.contains("bk-GlyphRenderer")) continue;  // Bokeh's overlay of a plot's frame lags a resize
      if (!visible(el)) continue;
      const details = el.closest("details");  // a closed menu's items are laid out but not shown
      if (details && !details.open && !el.closest("summary") && el !== details) continue;
      const r = el.getBoundingClientRect();
      if (r.right > vw + 1 || r.left < -1) out.push(`${describe(el)} spans ${Math.round(r.left)}..${Math.round(r.right)} px`);
      if ((el.tagName === "INPUT" || el.tagName === "TEXTAREA") && el.placeholder && !el.value) {
        const st = getComputedStyle(el);
        canvas.font = `${st.fontStyle} ${st.fontWeight} ${st.fontSize} ${st.fontFamily}`;
        const need = canvas.measureText(el.placeholder).width;
        const room = el.clientWidth - parseFloat(st.paddingLeft) - parseFloat(st.paddingRight);
        if (el.tagName === "INPUT") {
          if (need > room + 1) out.push(`${describe(el)}: placeholder needs ${Math.round(need)} px, has ${Math.round(room)}`);
        } else {
          const lineHeight = parseFloat(st.lineHeight) || parseFloat(st.fontSize) * 1.2;
          const lines = Math.ceil((need * 1.1) / room);  // word wrapping leaves some of each line empty
          const height = el.clientHeight - parseFloat(st.paddingTop) - parseFloat(st.paddingBottom);
          if (lines * lineHeight > height + 1) out.push(`${describe(el)}: placeholder needs ${lines} lines`);
        }
      }
    }
  };
  walk(document);
  const se = document.scrollingElement;
  if (se.scrollWidth > se.clientWidth + 1) out.push(`the page scrolls sideways: ${se.scrollWidth} > ${se.clientWidth} px`);
  return out;
}"""


LEGEND_LABELS = """() => {
  const out = [];
  for (const doc of Bokeh.documents) for (const m of doc.all_models)
    if (m.label && typeof m.label === "object" && typeof m.label.value === "string") out.push(m.label.value);
  return out;
}"""


def overflows(page: Any) -> list[str]:
    return [str(x) for x in page.evaluate(OVERFLOWS)]


def open_at(page: Any, url: str, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(url)
    page.wait_for_function(INTERACTIVE)


def settle(page: Any) -> None:
    """Let the page's first refresh arrive and Bokeh lay out again (no timing is asserted)."""
    page.wait_for_timeout(1500)
    page.wait_for_function(INTERACTIVE)


# Where every element is (inside Bokeh's shadow roots too), summed up: unchanged between two looks, the layout
# has settled.
LAYOUT = """() => {
  let n = 0, sum = 0;
  const walk = (root) => {
    for (const el of root.querySelectorAll("*")) {
      if (el.shadowRoot) walk(el.shadowRoot);
      const r = el.getBoundingClientRect();
      n += 1;
      sum += Math.round(r.left) + 3 * Math.round(r.right) + 7 * Math.round(r.top) + 11 * Math.round(r.bottom);
    }
  };
  walk(document);
  return `${n}:${sum}`;
}"""


def relayout(page: Any, timeout_s: float = 10.0) -> None:
    """After a resize: wait until Bokeh has laid the page out again (the same layout in two looks 300 ms apart)."""
    deadline = time.monotonic() + timeout_s
    page.wait_for_function(INTERACTIVE)
    last = page.evaluate(LAYOUT)
    while time.monotonic() < deadline:
        page.wait_for_timeout(300)
        now = page.evaluate(LAYOUT)
        if now == last:
            break
        last = now
    page.wait_for_function(INTERACTIVE)


def test_every_page_fits_the_window_at_laptop_and_desktop_widths(dashboard: Any, page: Any) -> None:
    from ui.app import PAGES

    base = dashboard.settings.url("dashboard")
    found: dict[str, list[str]] = {}
    for p in PAGES:
        open_at(page, base + p.route, WIDTHS[0])
        settle(page)
        if p.route in ("/tfd", "/eta", "/ecci"):  # the result views fill up: the state that was cut off
            page.get_by_role("button", name="Predict", exact=True).click()
            page.locator(".prediction-meta").first.wait_for()
        for width in WIDTHS:
            # The template scrolls inside its main area: a tall window shows the whole page in the screenshot.
            page.set_viewport_size({"width": width, "height": 1800 if width == SCREENSHOT_WIDTH else 900})
            relayout(page)
            problems = overflows(page)
            if problems:
                found[f"{p.route} at {width} px"] = problems[:8]
            if width == SCREENSHOT_WIDTH:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                name = p.route.strip("/") or "home"
                page.screenshot(path=str(SCREENSHOTS / f"layout-{name}-{width}.png"), timeout=180_000)
    assert not found, "elements outside the window:\n" + "\n".join(f"{k}: {v}" for k, v in found.items())
    assert not page.errors


def test_a_narrow_window_stacks_the_prediction_under_the_form(dashboard: Any, page: Any) -> None:
    open_at(page, dashboard.settings.url("dashboard") + "/tfd", 1024)
    settle(page)
    form = page.get_by_text("Prediction request").first.bounding_box()
    result = page.get_by_text("Prediction", exact=True).first.bounding_box()
    assert result["y"] > form["y"] + 100, (form, result)  # below the form, not beside it
    wide = page.get_by_text("Prediction", exact=True).first
    page.set_viewport_size({"width": 1920, "height": 900})
    relayout(page)
    form, result = page.get_by_text("Prediction request").first.bounding_box(), wide.bounding_box()
    assert abs(result["y"] - form["y"]) < 20 and result["x"] > form["x"], (form, result)  # side by side
    assert overflows(page) == []


def test_observability_titles_follow_the_data_and_no_errors_read_zero(dashboard: Any, page: Any) -> None:
    """A chart with lines is not titled "(no data yet)"; errors that did not happen are a line at 0."""
    from tests.ui.test_dashboard import bokeh_texts

    open_at(page, dashboard.settings.url("dashboard") + "/observability", 1440)
    wanted = {"Events per second", "Errors per second"}
    deadline = time.monotonic() + 90
    while not wanted <= set(bokeh_texts(page)):  # the producers stream: rates appear after two scrapes
        assert time.monotonic() < deadline, f"chart titles: {bokeh_texts(page)}"
        page.wait_for_timeout(1000)
    # The 0 line of errors that did not happen is checked without a browser (test_observability_page.py): on the
    # shared test platform, earlier tests' refused requests are real errors.
    legend = page.evaluate(LEGEND_LABELS)
    assert legend, "no legend under the charts"
    assert not page.errors


RENDERED_LAYERS = """() => {
  const out = {};
  for (const doc of Bokeh.documents) for (const m of doc.all_models)
    if (m.name && m.data_source) out[m.name] = Object.values(m.data_source.data)[0].length;
  return out;
}"""


def test_maps_draw_the_offline_basemap_and_the_fraud_page_maps_transactions(dashboard: Any, page: Any) -> None:
    """No tile server here: the maps draw Natural Earth's countries and cities; the fraud page's Map tab shows where
    the latest transactions happened and the Predict form's transaction."""
    base = dashboard.settings.url("dashboard")
    open_at(page, base + "/tfd", 1440)
    page.get_by_role("button", name="Predict", exact=True).click()
    page.locator(".prediction-meta").first.wait_for()
    page.get_by_text("Map", exact=True).first.click()
    page.locator(".map-legend").first.wait_for()
    deadline = time.monotonic() + 30
    while (layers := page.evaluate(RENDERED_LAYERS)).get("transactions", 0) == 0:  # the poller reads the log
        assert time.monotonic() < deadline, f"no transactions on the map: {layers}"
        page.wait_for_timeout(1000)
    assert layers["basemap-countries"] > 200 and layers["basemap-cities"] > 200, layers
    assert layers["this-transaction"] == 1, layers
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "tfd-map-1440.png"), timeout=180_000)
    for route in ("/eta", "/ecci"):
        open_at(page, base + route, 1440)
        layers = page.evaluate(RENDERED_LAYERS)
        assert layers.get("basemap-countries", 0) > 200, (route, layers)
    assert not page.errors


def test_services_menu_links_every_service_with_its_logo(dashboard: Any, page: Any) -> None:
    import requests

    from ui.layout import SERVICE_LOGOS, service_links

    links = service_links(dashboard.settings)
    labels = [label for label, _, _ in links]
    assert {"MLflow", "Prometheus", "S3 file browser", "S3 (SeaweedFS)"} <= set(labels)
    open_at(page, dashboard.settings.url("dashboard") + "/", 1440)
    page.get_by_text("Services ▾").first.click()
    for label, url, _ in links:
        link = page.locator("nav .menu a", has_text=label).first
        link.wait_for()
        assert link.get_attribute("href") == url, label
        logo = link.locator(".logo").first
        if SERVICE_LOGOS[label][0] is not None:
            assert logo.locator("svg path").count() >= 1, f"{label}: no logo drawn"
        else:
            assert logo.inner_text().strip() == SERVICE_LOGOS[label][1], label
    browser_url = next(url for label, url, _ in links if label == "S3 file browser")
    reply = requests.get(browser_url, timeout=10, headers={"Accept": "text/html"})
    assert reply.status_code == 200 and "text/html" in reply.headers.get("Content-Type", ""), browser_url
    assert overflows(page) == []  # the open menu stays inside the window
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "services-menu-1440.png"), timeout=180_000)


def test_the_dashboard_exports_its_own_metrics_and_charts_them(dashboard: Any, page: Any) -> None:
    """GET /metrics on the dashboard's server: sessions, page loads, Predict clicks, callback latency; the
    Observability page draws them."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    from tests.ui.test_dashboard import bokeh_texts

    base = dashboard.settings.url("dashboard")
    open_at(page, base + "/eta", 1440)
    page.get_by_role("button", name="Predict", exact=True).click()
    page.locator(".prediction-meta").first.wait_for()
    reply = requests.get(base + "/metrics", timeout=10)
    assert reply.status_code == 200 and reply.headers["Content-Type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(reply.text)
        for s in family.samples
    }
    assert samples[("coelho_dashboard_page_loads_total", (("endpoint", "/eta"),))] >= 1
    assert samples[("coelho_dashboard_prediction_clicks_total", (("domain", "eta"), ("outcome", "ok")))] >= 1
    assert samples[("coelho_dashboard_sessions", ())] >= 1
    assert samples[("coelho_dashboard_callback_seconds_count", (("operation", "predict"),))] >= 1
    open_at(page, base + "/observability", 1440)
    title = "Dashboard: sessions, page loads and Predict clicks"
    deadline = time.monotonic() + 90
    while title not in bokeh_texts(page):  # drawn once two scrapes of the dashboard were taken
        assert time.monotonic() < deadline, f"chart titles: {bokeh_texts(page)}"
        page.wait_for_timeout(1000)


ELEMENTS_WITH_HANDLERS = """() => {
  const out = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll("*")) {
      if (el.shadowRoot) walk(el.shadowRoot);
      for (const a of el.attributes)
        if (["onerror", "onload"].includes(a.name) || a.value.includes("stolen")) out.push(`${el.tagName} ${a.name}`);
      if (el.tagName === "SCRIPT" && el.textContent.includes("stolen")) out.push("script");
    }
  };
  walk(document);
  return out;
}"""


def test_an_assistant_answer_reaches_the_page_sanitised_and_the_cookie_is_httponly(
    dashboard: Any, browser: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stand-in model answers with an <img onerror> and a <script>: neither handler nor script reaches the
    DOM, the Markdown around them renders; the chat session cookie is HttpOnly."""
    from tests.chat.anthropic_standin import AnthropicStandIn, text
    from tests.chat.chat_testkit import TEST_KEY

    with AnthropicStandIn() as api:
        api.default = [text('Safe <img src=x onerror="window.stolen=1"> **answer** <script>window.stolen=2</script>')]
        for name, value in {"ANTHROPIC_API_KEY": TEST_KEY, "ANTHROPIC_BASE_URL": api.url}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("CHAT_API_MAX_RETRIES", "0")
        if dashboard.running("chat"):
            dashboard.restart("chat")
        dashboard.start(["chat"])
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        try:
            page = context.new_page()
            page.set_default_timeout(90_000)
            open_at(page, dashboard.settings.url("dashboard") + "/", 1440)
            box = page.locator("textarea").first
            box.wait_for()
            box.click()
            box.press_sequentially("What does this page show?")
            page.get_by_role("button", name="Send").first.click()
            page.locator("strong", has_text="answer").first.wait_for(timeout=120_000)
            assert page.evaluate(ELEMENTS_WITH_HANDLERS) == []
            assert page.evaluate("() => window.stolen") is None
            cookies = {c["name"]: c for c in context.cookies()}
            assert "coelho_chat_session" in cookies, cookies
            assert cookies["coelho_chat_session"]["httpOnly"] is True
            assert "coelho_chat_session" not in page.evaluate("() => document.cookie")
        finally:
            context.close()
            dashboard.stop(["chat"])
