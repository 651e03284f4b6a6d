"""Repository-wide pytest setup: the `process` marker and the fast lane's process guard.

A test that starts a process (a private Redis, a function, a CLI, a platform service, Chromium) is marked
`process`: by hand, or automatically when it uses one of PROCESS_FIXTURES below. `./dev test --fast` deselects
those and runs pytest with `--forbid-processes`: any attempt to start a process there (subprocess, fork,
posix_spawn, os.system, multiprocessing) is refused and fails the test, or the doctest, that made it. The guard is
what keeps the markers honest: a new test that starts a process without the marker fails the fast lane.

Libraries' one-shot system probes (`uname -p` behind platform.processor(), loky's `lscpu`) are refused too, as
if the binary were missing, which they handle, without failing the test.
"""

from __future__ import annotations

import _posixsubprocess  # type: ignore[import-not-found]
import errno
import gc
import os
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# Fixtures that start a process (directly or through the session's platform); a test using one, even through
# another fixture, is marked `process`.
PROCESS_FIXTURES = {
    "platform",  # tests/conftest.py: the real embedded services (every stack fixture builds on it)
    "redis_server",  # tests/functions, tests/ui/test_state_reader.py: a private redis-server
    "private_redis",  # tests/observability: a private redis-server
    "private_kafka",  # tests/producers/test_kafka.py: a private broker
    "run_producer",  # tests/producers: `python -m producers` as a subprocess
    "started_processes",  # tests/producers: processes a test starts
    "browser",  # tests/ui: Chromium
}
# One model-state signing key (functions/model_state/signing.py) for the test process and every platform process it
# starts (they inherit it): a snapshot a function writes verifies in the test, and the other way round.
os.environ.setdefault("COELHO_STATE_KEY", "coelho-tests-model-state-key-0123456789abcdef")

PROBES = {("uname", "-p"), ("lscpu", "--parse=core"), ("cat", "/proc/cpuinfo")}
HINT = "the fast lane starts no process: mark the test `process` (or list its fixture in PROCESS_FIXTURES, conftest.py)"


class ProcessForbidden(PermissionError):
    """An OSError, so code that copes with a missing binary copes with this one."""


_attempts: list[str] = []


def _argv(what: str, args: tuple[Any, ...]) -> list[str]:
    if what == "os.system":
        return str(args[0]).split()
    raw = args[1] if what.startswith("os.posix_spawn") else args[0] if args else []
    return [os.fsdecode(a) for a in raw] if isinstance(raw, list | tuple) else []


def _refuse(what: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        argv = _argv(what, args)
        if tuple(argv[:2]) not in PROBES:
            _attempts.append(f"{what}({' '.join(argv)[:200]})")
        raise ProcessForbidden(errno.EPERM, f"{what} refused: {HINT}")

    return refuse


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--forbid-processes",
        action="store_true",
        default=False,
        help="fail any test or doctest that starts a process (./dev test --fast sets it)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("forbid_processes"):
        return
    # Test modules that would start a process while being collected (e.g. rendering manifests to parametrize
    # over them) read this and collect nothing to run instead.
    os.environ["COELHO_FORBID_PROCESSES"] = "1"
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return  # pytest-xdist's controller starts the workers; each worker (which runs the tests) installs the guard
    # subprocess (through the reference it took at import) and multiprocessing call _posixsubprocess.fork_exec;
    # subprocess may use os.posix_spawn instead.
    subprocess._fork_exec = _posixsubprocess.fork_exec = _refuse("fork_exec")  # type: ignore[attr-defined]
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
        if hasattr(os, name):
            setattr(os, name, _refuse(f"os.{name}"))


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        # `stack` (the embedded services) and `browser` (Chromium) tests start processes by definition.
        if PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())) or any(
            item.get_closest_marker(name) for name in ("stack", "browser")
        ):
            item.add_marker(pytest.mark.process)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _attempts.clear()  # an earlier test's refused start (in a fixture that then failed) is not this test's


@pytest.fixture(autouse=True)
def _no_process_started() -> Iterator[None]:
    """Fails a test whose process was refused, even when the code under test swallowed the error."""
    yield
    if _attempts:
        attempts = "; ".join(_attempts)
        _attempts.clear()
        pytest.fail(f"started a process: {attempts}: {HINT}", pytrace=False)


def pytest_collection_finish(session: pytest.Session) -> None:
    # What collection imported (MLflow, Panel, River, ...) lives as long as the session: out of the collector's
    # way, a test that allocates much (a model learning 10,000 events) no longer pays for rescanning it. The
    # fast lane takes about a fifth less time (measured).
    gc.freeze()
