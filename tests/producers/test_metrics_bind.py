"""The producers' metrics server binds HOST (0.0.0.0 in a pod, so that a PodMonitor can scrape it), else 127.0.0.1."""

from __future__ import annotations

from typing import Any

import pytest

from producers import metrics as producer_metrics


@pytest.mark.parametrize(
    ("environ", "given", "bound"),
    [({}, None, "127.0.0.1"), ({"HOST": "0.0.0.0"}, None, "0.0.0.0"), ({"HOST": "0.0.0.0"}, "127.0.0.1", "127.0.0.1")],  # noqa: S104
)
def test_metrics_bind_host_from_the_environment(
    environ: dict[str, str], given: str | None, bound: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, str]] = []

    def fake_start(port: int, addr: str = "", registry: Any = None) -> None:
        calls.append((port, addr))

    monkeypatch.delenv("HOST", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(producer_metrics, "start_http_server", fake_start)
    producer_metrics.ProducerMetrics("tfd").serve(9108, given)
    assert calls == [(9108, bound)]
