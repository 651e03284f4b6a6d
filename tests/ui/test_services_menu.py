"""The Services menu: every service a user can open, each with its logo (or a text badge); Grafana only when its
address is configured."""

from __future__ import annotations

import pytest

from coelho.settings import Settings
from ui.layout import SERVICE_LOGOS, nav_html, service_links


def test_every_link_has_a_logo_and_grafana_only_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COELHO_GRAFANA_URL", raising=False)
    settings = Settings()
    labels = [label for label, _, _ in service_links(settings)]
    assert "Grafana" not in labels and "S3 file browser" in labels
    assert set(labels) <= set(SERVICE_LOGOS)  # a new link needs its logo (or badge) declared
    menu = nav_html("/", [("/", "Home")], settings)
    assert menu.count("<svg") >= labels.count("MLflow") + labels.count("Prometheus")
    monkeypatch.setenv("COELHO_GRAFANA_URL", "https://grafana.example")
    links = {label: url for label, url, _ in service_links(settings)}
    assert links["Grafana"] == "https://grafana.example"
    assert "#F46800" in nav_html("/", [("/", "Home")], settings)  # Grafana's logo, in its colour
