"""The service table is consistent and the Prometheus configuration is generated from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from coelho import prometheus
from coelho.services import BY_NAME, SERVICES, module_runnable
from coelho.settings import DEFAULT_PORTS, Settings


def test_rows_reference_known_ports_and_services(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    assert len(BY_NAME) == len(SERVICES), "service names must be unique"
    for svc in SERVICES:
        assert svc.port in DEFAULT_PORTS, svc.name
        if svc.metrics_port:
            assert svc.metrics_port in DEFAULT_PORTS, svc.name
        for dep in svc.dependencies(s):
            assert dep in BY_NAME, (svc.name, dep)
        assert svc.url(s).startswith(("http://127.0.0.1:", "redis://127.0.0.1:", "kafka://127.0.0.1:")), svc.name


def test_every_liveness_check_asks_the_process_itself() -> None:
    """The supervisor restarts a service whose liveness check keeps failing: a TCP connect would pass for a stopped
    process (the kernel accepts for it), so every row's liveness is a request its own code must answer."""
    kinds = {s.name: s.liveness_check.kind for s in SERVICES}
    assert "tcp" not in kinds.values(), kinds
    assert BY_NAME["dashboard"].liveness_check.path == "/metrics"


def test_every_row_runs_a_module_that_exists() -> None:
    """The table holds no placeholder: the runtime refuses to start a row whose module is missing."""
    missing = {svc.name: svc.module for svc in SERVICES if not svc.available()}
    assert missing == {}, "rows whose module cannot run with `python -m`"


def test_module_runnable() -> None:
    assert module_runnable("json.tool")
    assert module_runnable("coelho.cli")
    assert not module_runnable("coelho")  # a package without __main__ cannot run with -m
    assert not module_runnable("functions.does_not_exist_xyz")


def test_prometheus_config_from_table(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path).with_free_ports(tmp_path)
    path = prometheus.write_config(s, rules_path=tmp_path / "none.yaml")
    cfg = yaml.safe_load(path.read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    expected = {f"coelho-{svc.name}" for svc in SERVICES if svc.metrics_path}
    assert set(jobs) == expected
    assert "rule_files" not in cfg
    # A service is a target only while the runtime has it started (file-based discovery).
    [target_file] = jobs["coelho-prometheus"]["file_sd_configs"][0]["files"]
    assert not Path(target_file).exists()
    prometheus.register_target(s, "prometheus")
    group = json.loads(Path(target_file).read_text())
    assert group[0]["targets"] == [f"127.0.0.1:{s.ports['prometheus']}"]
    prometheus.unregister_target(s, "prometheus")
    assert not Path(target_file).exists()


@pytest.mark.process  # write_config checks the rules with promtool, when installed
def test_rule_groups_plain_and_prometheusrule(tmp_path: Path) -> None:
    rule = {"alert": "X", "expr": "up == 0", "for": "1m"}
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({"groups": [{"name": "a", "rules": [rule]}]}))
    crd = tmp_path / "crd.yaml"
    crd.write_text(
        yaml.safe_dump_all(
            [
                {
                    "apiVersion": "monitoring.coreos.com/v1",
                    "kind": "PrometheusRule",
                    "spec": {"groups": [{"name": "b", "rules": [rule]}]},
                }
            ]
        )
    )
    assert [g["name"] for g in prometheus.rule_groups(plain)] == ["a"]
    assert [g["name"] for g in prometheus.rule_groups(crd)] == ["b"]
    s = Settings(data_dir=tmp_path / "d")
    cfg = yaml.safe_load(prometheus.write_config(s, rules_path=plain).read_text())
    assert cfg["rule_files"] == [str(s.run_dir / "prometheus-rules.yml")]


@pytest.mark.process  # promtool, when installed
def test_invalid_rules_are_left_out(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"groups": [{"name": "a", "rules": [{"alert": "X", "expr": "up ==== 0("}]}]}))
    s = Settings(data_dir=tmp_path / "d")
    cfg = yaml.safe_load(prometheus.write_config(s, rules_path=bad).read_text())
    if shutil.which("promtool"):
        assert "rule_files" not in cfg


def test_learned_counts_from_metrics_text() -> None:
    from coelho.cli import parse_learned

    gauge_only = (
        "# TYPE coelho_model_events_learned gauge\n"
        'coelho_model_events_learned{domain="tfd",model="a"} 10\n'
        'coelho_model_events_learned{domain="tfd",model="b"} 12\n'
        'coelho_model_events_learned{domain="eta",model="a"} 3\n'
    )
    assert parse_learned(gauge_only) == {"tfd": 12, "eta": 3}
    counter = (
        "# TYPE coelho_events_learned counter\n"
        'coelho_events_learned_total{domain="tfd",model_version="1"} 5\n'
        'coelho_events_learned_total{domain="tfd",model_version="2"} 6\n'
    )
    assert parse_learned(gauge_only + counter) == {"tfd": 11}
    assert parse_learned("") == {}
