"""`coelho produce` on the command line: quiet by default (the Kafka client's INFO log stays out), a progress line
only on a terminal, the JSON summary at the end, and a note when a seed's events were sent before (duplicates)."""

from __future__ import annotations

import io
import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from coelho.progress import Progress
from producers.cli import SEEDS_KEY, produce


@pytest.fixture(autouse=True)
def _logging_levels() -> Any:
    """The command sets process-wide log levels: give the other tests theirs back."""
    names = ("", "kafka", "producers")
    before = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in before.items():
        logging.getLogger(name).setLevel(level)


def summary_of(output: str) -> dict[str, Any]:
    return dict(json.loads(output.strip().splitlines()[-1]))


def test_not_a_terminal_no_progress_line_and_the_summary_last(tmp_path: Path, unused_redis_url: str) -> None:
    out = tmp_path / "tfd.jsonl"
    result = CliRunner().invoke(
        produce,
        ["tfd", "--count", "40", "--rate", "0", "--seed", "3", "--output", str(out), "--redis-url", unused_redis_url],
    )
    assert result.exit_code == 0, result.output
    assert "\r" not in result.output and "ETA" not in result.output  # CliRunner is no terminal: no bar
    assert summary_of(result.output)["sent"] == 40
    assert len(out.read_text().splitlines()) == 40
    # quiet by default: the Kafka client logs warnings only; --verbose lets its INFO through
    assert logging.getLogger("kafka").getEffectiveLevel() >= logging.WARNING
    CliRunner().invoke(produce, ["tfd", "--count", "1", "--output", str(out), "--verbose"])
    assert logging.getLogger("kafka").getEffectiveLevel() == logging.INFO
    both = CliRunner().invoke(produce, ["tfd", "--count", "1", "--output", str(out), "--quiet", "--verbose"])
    assert both.exit_code == 2 and "not both" in both.output


def test_help_says_that_a_repeated_seed_sends_duplicates() -> None:
    text = " ".join(CliRunner().invoke(produce, ["--help"]).output.split())
    assert "duplicates" in text and "--quiet" in text and "--verbose" in text


def test_the_progress_line_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    with Progress(total=100, label="tfd", unit="events", stream=screen, interval=0) as bar:
        for done in range(1, 101):
            bar.update(done)
    drawn = screen.getvalue()
    assert drawn.count("\r") >= 100 and "100/100 events" in drawn and "ETA" in drawn and "/s" in drawn
    assert drawn.endswith("\r") and drawn.rstrip("\r").split("\r")[-1].strip() == ""  # cleared at the end
    piped = io.StringIO()
    with Progress(total=100, stream=piped) as bar:
        bar.update(50)
    assert piped.getvalue() == ""  # not a terminal: nothing


@pytest.mark.stack
def test_producing_a_seed_again_says_its_events_are_duplicates(kafka_bootstrap: str, redis_url: str) -> None:
    import redis

    seed = random.randrange(10**6, 10**7)
    client: Any = redis.Redis.from_url(redis_url)
    client.hdel(SEEDS_KEY.format(domain="eta"), str(seed))
    args = ["eta", "--count", "25", "--rate", "0", "--seed", str(seed)]
    args += ["--bootstrap-servers", kafka_bootstrap, "--redis-url", redis_url]
    first = CliRunner().invoke(produce, args)
    assert first.exit_code == 0, first.output
    assert summary_of(first.output)["duplicates"] == 0 and "note:" not in first.output
    assert "kafka.conn" not in first.output and "INFO" not in first.output  # no client chatter
    again = CliRunner().invoke(produce, args)
    assert again.exit_code == 0, again.output
    assert summary_of(again.output)["duplicates"] == 25
    assert "sent before with --seed" in again.output and "duplicates" in again.output


@pytest.mark.stack
def test_checkpoint_wait_reports_each_new_version(platform: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`coelho checkpoint --wait` returns once every live model has its new version (no bar: not a terminal)."""
    from coelho.platform_commands import checkpoint
    from tests.ui.conftest import feed_records

    platform.start(["router", "learn", "checkpoint"])
    for name, value in platform.settings.to_environ().items():
        monkeypatch.setenv(name, value)
    assert feed_records(platform.settings.url("learn") + "/", "eta", 30, seed=5) == 30
    result = CliRunner().invoke(checkpoint, ["eta", "--wait", "--timeout", "120"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines and all(line.startswith("eta ") and ": version " in line for line in lines), lines
    assert "\r" not in result.output
