"""A five-field cron schedule (minute hour day-of-month month day-of-week), as a PingSource's `schedule`.

Supports `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`, and the macros @hourly, @daily,
@weekly, @monthly, @yearly. Day-of-month and day-of-week combine with OR when both are restricted (cron's rule).

>>> from datetime import datetime
>>> CronSchedule("*/5 * * * *").next_after(datetime(2026, 1, 1, 10, 2, 30))
datetime.datetime(2026, 1, 1, 10, 5)
"""

from __future__ import annotations

from datetime import datetime, timedelta

from eventing.router.manifests import ManifestError

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def _field(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            start, end = low, high
        elif "-" in body:
            a, b = body.split("-", 1)
            start, end = int(a), int(b)
        else:
            start = int(body)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high) or step < 1:
            raise ValueError(part)
        values.update(range(start, end + 1, step))
    return values


class CronSchedule:
    def __init__(self, expression: str):
        text = _MACROS.get(expression.strip(), expression.strip())
        parts = text.split()
        if len(parts) != 5:
            raise ManifestError(f"cron schedule needs 5 fields, got {expression!r}")
        try:
            fields = [_field(p, lo, hi) for p, (lo, hi) in zip(parts, _RANGES, strict=True)]
        except ValueError as exc:
            raise ManifestError(f"bad cron field {exc} in {expression!r}") from None
        self.minutes, self.hours, self.days, self.months, dows = fields
        self.dows = {d % 7 for d in dows}
        self.dom_any = parts[2] == "*"
        self.dow_any = parts[4] == "*"
        self.expression = expression

    def _day_matches(self, when: datetime) -> bool:
        dom = when.day in self.days
        dow = (when.isoweekday() % 7) in self.dows
        if self.dom_any or self.dow_any:
            return dom and dow
        return dom or dow

    def next_after(self, when: datetime) -> datetime:
        """The first minute strictly after `when` that the schedule selects."""
        t = when.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for _ in range(366 * 24 * 60 * 5):
            if t.month not in self.months or not self._day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0)
                continue
            if t.minute not in self.minutes:
                t += timedelta(minutes=1)
                continue
            return t
        raise ManifestError(f"cron schedule {self.expression!r} never fires")
