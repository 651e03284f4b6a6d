"""Session fixtures shared by every test folder: the real platform, started on demand.

`platform` is a coelho.runtime.Platform on free ports and its own temporary data directory, running the REAL
embedded services with the same code `coelho up` uses. Nothing is started until a test asks:
`platform.start(["learn", "router"])` starts those services plus their dependencies (idempotent, waits until
healthy); `platform.settings` gives every address; `platform.kill(name)` / `platform.restart(name)` for fault
tests. Everything is stopped at the end of the session.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from coelho.runtime import Platform
from coelho.settings import Settings


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    settings = Settings.load().with_free_ports(tmp_path_factory.mktemp("coelho-data"))
    plat = Platform(settings)
    try:
        yield plat
    finally:
        problems = plat.stop()
        if problems:  # (tests/coelho checks `down` frees every port; here another stack may reuse a freed port)
            warnings.warn(f"platform stop: {problems}", stacklevel=1)
