"""A progress line on the terminal for the long commands (`coelho produce`, `coelho checkpoint --wait`, `coelho up`).

One line on stderr, redrawn in place at most ten times a second: a bar when the total is known, how many, the rate
and the time left. It draws only when stderr is a terminal (a pipe, a log file or a test runner gets nothing, so
machine-readable output stays clean) and clears itself when done, leaving the screen to the command's result.

    with Progress(total=500, label="tfd", unit="events") as bar:
        for ...:
            bar.update(done)

`ServiceProgress` is `coelho up`'s: how many services are healthy of how many, which are still starting and the
time so far, on stdout between the command's own lines (`echo` wipes the line, prints, and draws it again).

No dependency: the line is a few characters of ANSI-free text and a carriage return.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TextIO


def _duration(seconds: float) -> str:
    """Short human time.

    >>> _duration(7.2), _duration(75), _duration(3725)
    ('7s', '1m15s', '1h02m')
    """
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_line(label: str, done: int, total: int | None, elapsed: float, unit: str = "", width: int = 80) -> str:
    """The text of one progress line, at most `width` characters.

    >>> progress_line("tfd", 250, 500, 5.0, "events", width=72)
    'tfd [##########..........]  50% 250/500 events  50.0/s  ETA 5s'
    >>> progress_line("tfd", 120, None, 4.0, "events")
    'tfd 120 events  30.0/s  4s'
    >>> len(progress_line("a long label", 1, 10, 1.0, "events", width=30)) <= 30
    True
    """
    rate = done / elapsed if elapsed > 0 else 0.0
    unit = f" {unit}" if unit else ""
    if total:
        fraction = min(max(done / total, 0.0), 1.0)
        left = (total - done) / rate if rate > 0 else None
        eta = f"ETA {_duration(left)}" if left is not None else "ETA ?"
        tail = f" {fraction:4.0%} {done:,}/{total:,}{unit}  {rate:,.1f}/s  {eta}"
        room = width - len(label) - len(tail) - 3
        bar = ""
        if room >= 10:
            cells = min(room, 20)
            filled = int(round(fraction * cells))
            bar = " [" + "#" * filled + "." * (cells - filled) + "]"
        line = f"{label}{bar}{tail}"
    else:
        line = f"{label} {done:,}{unit}  {rate:,.1f}/s  {_duration(elapsed)}"
    return line[:width]


class Progress:
    """A progress line on `stream` (stderr), drawn only when it is a terminal (or when `enabled` says so)."""

    def __init__(
        self,
        total: int | None = None,
        label: str = "",
        unit: str = "",
        stream: TextIO | None = None,
        enabled: bool | None = None,
        interval: float = 0.1,
    ) -> None:
        self.total = total
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self._is_terminal(self.stream) if enabled is None else enabled
        self.interval = interval
        self.done = 0
        self.started = time.monotonic()
        self._drawn_at = 0.0
        self._width = 0
        self._line = ""  # the text on screen now (when _width)

    @staticmethod
    def _is_terminal(stream: TextIO) -> bool:
        try:
            return bool(stream.isatty())
        except (AttributeError, ValueError):  # a closed or unusual stream
            return False

    def update(self, done: int, force: bool = False) -> None:
        """`done` of `total` so far; redraws when `interval` has passed since the last drawing (or `force`)."""
        self.done = done
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < self.interval:
            return
        self._drawn_at = now
        self._draw(now)

    def render(self, elapsed: float, width: int) -> str:
        """The line to draw, at most `width` characters."""
        return progress_line(self.label, self.done, self.total, elapsed, self.unit, width=width)

    def _draw(self, now: float) -> None:
        columns = shutil.get_terminal_size((80, 24)).columns
        line = self.render(now - self.started, max(20, columns - 1))
        if self._width and line == self._line:  # the same text again: nothing to write
            return
        padding = " " * max(0, self._width - len(line))  # wipe what a longer previous line left
        self._width, self._line = len(line), line
        self.stream.write("\r" + line + padding)
        self.stream.flush()

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def close(self) -> None:
        """Clear the line (the command prints its result next)."""
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """A log line on the same stream first wipes the progress line (redrawn at the next update)."""
        self.close()
        return True

    def _log_handlers(self) -> list[logging.Handler]:
        return [
            h
            for h in logging.getLogger().handlers
            if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is self.stream
        ]

    def __enter__(self) -> Progress:
        if self.enabled:
            for handler in self._log_handlers():
                handler.addFilter(self)
            self.update(0, force=True)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for handler in self._log_handlers():
            handler.removeFilter(self)
        self.close()


def services_line(ready: int, total: int, waiting: Sequence[str], elapsed: float, width: int = 80) -> str:
    """`coelho up`'s line: services healthy of all, a bar, those still starting (as many as fit), the time so far.

    >>> services_line(3, 5, ["learn", "predict"], 12.4, width=80)
    'healthy 3/5 [############........]  starting: learn, predict  12s'
    >>> services_line(5, 5, [], 40.0, width=40)
    'healthy 5/5 [####################]  40s'
    >>> services_line(1, 9, ["mlflow", "learn", "predict", "checkpoint", "chat", "dashboard", "sql", "lake"], 3.0, 66)
    'healthy 1/9 [##..................]  starting: mlflow, learn +6  3s'
    """
    count = f"healthy {ready}/{total}"
    bar = ""
    if total:
        filled = int(round(min(max(ready / total, 0.0), 1.0) * 20))
        bar = " [" + "#" * filled + "." * (20 - filled) + "]"
    tail = f"  {_duration(elapsed)}"
    names = list(waiting)

    def starting(shown: int) -> str:
        if not names:
            return ""
        if shown == 0:
            return f"  starting: {len(names)}"
        more = f" +{len(names) - shown}" if shown < len(names) else ""
        return f"  starting: {', '.join(names[:shown])}{more}"

    for head in (count + bar, count):  # fewer names first, then no bar: the count and the time always show
        for shown in range(len(names), -1, -1):
            line = head + starting(shown) + tail
            if len(line) <= width:
                return line
    return (count + starting(0) + tail)[:width]


class ServiceProgress(Progress):
    """`coelho up`'s progress line on `stream` (stdout), drawn only when it is a terminal: nothing in a log or CI.

    `update(ready, waiting)` as the platform starts; `echo(line)` prints one of the command's own lines (through
    `say`, default: write it to the stream) above the progress line, which it wipes and draws again.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        interval: float = 0.1,
        say: Callable[[str], None] | None = None,
    ) -> None:
        stream = stream if stream is not None else sys.stdout
        super().__init__(stream=stream, enabled=enabled, interval=interval)
        self.ready: list[str] = []
        self.waiting: list[str] = []
        self._say = say

    def update_services(self, ready: Sequence[str], waiting: Sequence[str], force: bool = False) -> None:
        """The services healthy so far and those still starting (or waiting for a dependency)."""
        self.ready, self.waiting = list(ready), list(waiting)
        self.update(len(self.ready), force=force)

    def render(self, elapsed: float, width: int) -> str:
        return services_line(len(self.ready), len(self.ready) + len(self.waiting), self.waiting, elapsed, width)

    def echo(self, line: str, say: Callable[[str], None] | None = None) -> None:
        """Print `line` as the command would (`say`, else the one given at creation), the progress line wiped first
        and drawn again under it."""
        drawn = bool(self._width)
        self.close()
        say = say or self._say
        if say is not None:
            say(line)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()
        if self.enabled and drawn:
            self._drawn_at = time.monotonic()
            self._draw(self._drawn_at)

    def __enter__(self) -> ServiceProgress:
        if self.enabled:  # drawn at the first update_services: before it there is nothing to count
            for handler in self._log_handlers():
                handler.addFilter(self)
        return self
