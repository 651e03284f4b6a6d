"""Prometheus configuration generated from the service table.

Every row of coelho.services.SERVICES with a `metrics_path` becomes a scrape job.
Alert/recording rules come from knative/monitoring/alert-rules.yaml when that file exists; it may be a plain
Prometheus rule file (`groups:`) or a PrometheusRule resource (`spec.groups`), possibly multi-document.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from coelho.settings import PROJECT_ROOT, Settings

ALERT_RULES = PROJECT_ROOT / "knative" / "monitoring" / "alert-rules.yaml"


def targets_dir(settings: Settings) -> Path:
    """File-based service discovery: one <service>.json per started service, removed when it stops."""
    return settings.run_dir / "prometheus-targets"


def scrape_jobs(settings: Settings) -> list[dict[str, Any]]:
    """One job per service with metrics; its target appears only while the runtime has it started.

    Prometheus re-reads the target files every few seconds, so `coelho up --no-producers` (or a test that starts
    part of the platform) does not make services that were never started look down.
    """
    from coelho.services import SERVICES

    jobs: list[dict[str, Any]] = []
    for svc in SERVICES:
        if not svc.metrics_path:
            continue
        jobs.append(
            {
                "job_name": f"coelho-{svc.name}",
                "metrics_path": svc.metrics_path,
                "file_sd_configs": [
                    {"files": [str(targets_dir(settings) / f"{svc.name}.json")], "refresh_interval": "5s"}
                ],
            }
        )
    return jobs


def register_target(settings: Settings, name: str) -> None:
    """Tell Prometheus to scrape service `name` (called by the runtime when it launches the service)."""
    from coelho.services import SERVICES

    svc = next((s for s in SERVICES if s.name == name), None)
    if svc is None or not svc.metrics_path:
        return
    port = settings.ports[svc.metrics_port or svc.port]
    folder = targets_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    group = [{"targets": [f"{settings.host}:{port}"], "labels": {"service": svc.name, "kind": svc.kind}}]
    tmp = folder / f".{name}.json.tmp"
    tmp.write_text(json.dumps(group))
    tmp.replace(folder / f"{name}.json")  # atomic: Prometheus never reads half a file


def unregister_target(settings: Settings, name: str) -> None:
    (targets_dir(settings) / f"{name}.json").unlink(missing_ok=True)


def rule_groups(path: Path = ALERT_RULES) -> list[dict[str, Any]]:
    """The rule groups of knative/monitoring/alert-rules.yaml, or of `path` ([] when the file does not exist)."""
    if not path.exists():
        return []
    groups: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not isinstance(doc, dict):
            continue
        if isinstance(doc.get("groups"), list):
            groups.extend(doc["groups"])
        spec = doc.get("spec")
        if isinstance(spec, dict) and isinstance(spec.get("groups"), list):
            groups.extend(spec["groups"])
    return groups


def config(settings: Settings, rules_file: Path | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "scrape_configs": scrape_jobs(settings),
    }
    if rules_file is not None:
        cfg["rule_files"] = [str(rules_file)]
    return cfg


def write_config(settings: Settings, rules_path: Path = ALERT_RULES) -> Path:
    """Write <run_dir>/prometheus.yml (and prometheus-rules.yml when there are rules); returns the config path."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    rules_file: Path | None = None
    groups = rule_groups(rules_path)
    if groups:
        rules_file = settings.run_dir / "prometheus-rules.yml"
        rules_file.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
        problem = check_rules(rules_file)
        if problem:
            # Bad rules would keep Prometheus from starting: run without them and say why.
            print(f"prometheus: ignoring {rules_path} (promtool: {problem})", file=sys.stderr)
            rules_file = None
    path = settings.run_dir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config(settings, rules_file), sort_keys=False))
    return path


def check_rules(path: Path) -> str | None:
    """promtool's complaint about a rule file (None: valid, or promtool not installed)."""
    promtool = shutil.which("promtool")
    if not promtool:
        return None
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30)
    if proc.returncode == 0:
        return None
    lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit code {proc.returncode}"
