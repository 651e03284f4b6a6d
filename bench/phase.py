"""A bench's phases on the terminal the way the `coelho` commands show theirs (coelho/progress.py).

One progress line on stderr per phase, with its count, its total when known and the rate: drawn only when stderr is
a terminal, so a bench piped into a file or another program still prints nothing but its lines and the JSON
object on its last line of stdout. A phase whose work blocks (a load run, a wait for a commit) gets its count from
a function polled on a thread of its own.

    with phase("peak tfd", total=2000, unit="events", count=lambda: head(client, "tfd") - start):
        produce_records(...)
        wait_head(...)
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coelho.progress import Progress  # noqa: E402  (the repository root is on sys.path above)


@contextmanager
def phase(
    label: str,
    total: int | None = None,
    unit: str = "events",
    count: Callable[[], int] | None = None,
    every_s: float = 0.25,
) -> Iterator[Progress]:
    """A progress line for one phase; `count` (polled every `every_s` while the phase runs) says how far it is.
    Without `count` the caller updates the yielded `Progress` itself. Polling stops with the phase, and only runs
    when the line is drawn (a bench in a pipe polls nothing)."""
    bar = Progress(total=total, label=label, unit=unit)
    stop = threading.Event()
    poller: threading.Thread | None = None
    if count is not None and bar.enabled:

        def poll() -> None:
            while not stop.is_set():
                with contextlib.suppress(Exception):  # a service between answers: the next poll draws
                    bar.update(max(0, count()), force=True)
                stop.wait(every_s)

        poller = threading.Thread(target=poll, name=f"progress-{label}", daemon=True)
    with bar:
        if poller is not None:
            poller.start()
        try:
            yield bar
        finally:
            stop.set()
            if poller is not None:
                poller.join(5)
