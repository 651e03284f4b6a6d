"""Waiting in tests that run real processes: poll a condition until it holds, or fail saying what was last seen.

>>> until(lambda: 42)
42
>>> until(lambda: [], timeout=0.1, what="an empty list")
Traceback (most recent call last):
...
AssertionError: an empty list: not true within 0.1 s (last: [])
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def until(condition: Callable[[], Any], timeout: float = 30.0, what: str = "", interval: float = 0.05) -> Any:
    """The first truthy value `condition()` returns within `timeout` seconds; AssertionError otherwise."""
    deadline = time.monotonic() + timeout
    last = condition()
    while not last and time.monotonic() < deadline:
        time.sleep(interval)
        last = condition()
    if not last:
        raise AssertionError(f"{what or condition}: not true within {timeout:g} s (last: {last!r})")
    return last
