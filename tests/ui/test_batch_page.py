"""The Batch page in Chromium against the real S3 store, MLflow and dashboard: pick a domain and one of its studies,
see the metrics table (batch, River progressive and frozen, gaps) and the diagnostics, then start a study and see
its progress lines until it is finished and listed. Screenshots in test-artifacts/screenshots/batch-page*.png."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coelho.settings import PROJECT_ROOT
from functions.batch.diagnostics import FIGURES

SCREENSHOTS = PROJECT_ROOT / "test-artifacts" / "screenshots"
DOMAIN = "eta"


@pytest.fixture(scope="module")
def batch_dashboard(platform: Any) -> Iterator[dict[str, Any]]:
    """A small eta lake in a bucket of its own, one study of it logged, and the dashboard started with that bucket
    (the studies it starts read it): stopped at the end, so later tests get a dashboard without it."""
    from coelho.services import s3_client
    from functions.batch.report import log_study
    from functions.batch.study import run_study
    from tests.functions.batch_lake import write_lake

    platform.start(["s3", "mlflow"], producers=False)
    bucket = f"batch-page-{uuid.uuid4().hex[:10]}"
    s3_client(platform.settings).make_bucket(bucket)
    env = {**platform.settings.function_env(), "COELHO_LAKE_BUCKET": bucket}
    write_lake(DOMAIN, 1500, 7, env, commits=2)
    study = log_study(run_study(DOMAIN, environ=env, online=True), env)
    platform.stop(["dashboard"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COELHO_LAKE_BUCKET", bucket)  # the dashboard's process, and the studies it starts, read it
        platform.start(["dashboard"], producers=False)
    try:
        yield {"platform": platform, "study": study}
    finally:
        platform.stop(["dashboard"])


def _screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.set_viewport_size({"width": 1500, "height": 2400})
    page.wait_for_timeout(500)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1500, "height": 1000})
    return path


def _until(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"not seen within {seconds:g} s: {what}")


@pytest.mark.stack
@pytest.mark.browser
@pytest.mark.timeout(900)  # a study before the page and one from it, on a shared machine
def test_pick_a_study_see_its_metrics_and_plots_then_start_one(batch_dashboard: dict[str, Any], page: Any) -> None:
    platform, study = batch_dashboard["platform"], batch_dashboard["study"]
    page.goto(platform.settings.url("dashboard") + "/batch")
    page.locator(".batch-start button").first.wait_for()
    page.locator(".batch-domain select").first.select_option(DOMAIN)
    run_select = page.locator(".batch-run select").first
    label = f"v{study.model_version}"
    _until(lambda: any(t.endswith(label) for t in run_select.locator("option").all_inner_texts()), 120, label)
    run_select.select_option(label=next(t for t in run_select.locator("option").all_inner_texts() if t.endswith(label)))

    table = page.locator(".batch-table table").first
    table.wait_for()
    _until(
        lambda: f"registered version {study.model_version}" in page.locator(".batch-table p").first.inner_text(),
        60,
        "the study's table",
    )
    text = table.inner_text()
    assert "mae" in text and "River progressive" in text and "gap vs frozen" in text
    images = page.locator(".batch-figures img")
    _until(lambda: images.count() == len(FIGURES["regression"]), 120, "every figure of the study")
    for name in FIGURES["regression"]:
        assert page.locator(".batch-figures").get_by_text(name, exact=True).count() == 1
    assert all(images.nth(i).evaluate("img => img.naturalWidth") > 100 for i in range(images.count()))
    _screenshot(page, "batch-page")

    page.locator(".batch-start button").first.click()
    page.get_by_text(f"study of {DOMAIN} started").first.wait_for()
    progress = page.locator(".batch-progress pre").first  # (a pane's text is in its shadow root: read inside it)
    _until(lambda: "rows: train" in progress.inner_text(), 300, "the study's progress lines")
    _screenshot(page, "batch-page-progress")
    ended = page.get_by_text("study finished").or_(page.get_by_text("study failed"))
    _until(lambda: ended.count() > 0, 600, "the study's end")
    assert page.get_by_text("study finished").count() == 1, progress.inner_text()
    _until(lambda: "registered coelho-eta-batch version" in progress.inner_text(), 30, "the last progress line")

    def versions() -> list[int]:
        return [int(t.rsplit("v", 1)[1]) for t in run_select.locator("option").all_inner_texts() if " · v" in t]

    _until(lambda: max(versions(), default=0) > study.model_version, 120, "the new study in the list")
    _screenshot(page, "batch-page-finished")
    assert not page.errors  # type: ignore[attr-defined]
