"""How much the assistant may be asked: a per-session rate limit and a daily token budget, shared by every replica
through Redis.

- Rate: at most `per_minute` questions per session in a clock minute (CHAT_RATE_PER_MINUTE, default 20), counted
  in `coelho:chat:rate:<session>:<minute>` (expires after two minutes).
- Budget: the Messages API tokens (input + output, as the API reports them) spent by the whole function in a UTC
  day, in `coelho:chat:tokens:<YYYY-MM-DD>` (expires after two days). A question is refused once the day's total
  reaches CHAT_DAILY_TOKENS (default 2,000,000; 0 switches the budget off). A question that starts under the budget
  finishes: the budget can be passed by at most one answer.

Either refusal is a 429 with Retry-After: the seconds to the next minute, or to midnight UTC.

    >>> seconds_to_midnight(datetime(2026, 12, 3, 23, 59, 30, tzinfo=UTC))
    30
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

RATE_KEY = "coelho:chat:rate:{session}:{minute}"
TOKENS_KEY = "coelho:chat:tokens:{day}"


class OverLimit(Exception):
    """A question refused by a limit: the user's message and when to try again (seconds)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def seconds_to_midnight(now: datetime) -> int:
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - now).total_seconds()))


@dataclass
class ChatLimits:
    redis: Any
    per_minute: int = 20
    daily_tokens: int = 2_000_000

    def admit(self, session_id: str, now: datetime | None = None) -> None:
        """Count one question of `session_id`, or raise OverLimit (nothing counted against the budget)."""
        now = now or datetime.now(UTC)
        if self.daily_tokens > 0:
            spent = int(self.redis.get(TOKENS_KEY.format(day=now.date().isoformat())) or 0)
            if spent >= self.daily_tokens:
                raise OverLimit(
                    "The assistant has used its token budget for today "
                    f"({self.daily_tokens:,} tokens). It is available again after midnight UTC.",
                    seconds_to_midnight(now),
                )
        if self.per_minute > 0:
            key = RATE_KEY.format(session=session_id, minute=int(now.timestamp() // 60))
            pipe = self.redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, 120)
            count = int(pipe.execute()[0])
            if count > self.per_minute:
                wait = 60 - int(now.timestamp()) % 60
                raise OverLimit(
                    f"Too many questions in this session: at most {self.per_minute} a minute. Try again in {wait} s.",
                    wait,
                )

    def spend(self, tokens: int, now: datetime | None = None) -> None:
        """Add the tokens of one Messages API call to the day's total."""
        if tokens <= 0 or self.daily_tokens <= 0:
            return
        key = TOKENS_KEY.format(day=(now or datetime.now(UTC)).date().isoformat())
        pipe = self.redis.pipeline()
        pipe.incrby(key, tokens)
        pipe.expire(key, 2 * 86400)
        pipe.execute()

    def spent_today(self, now: datetime | None = None) -> int:
        return int(self.redis.get(TOKENS_KEY.format(day=(now or datetime.now(UTC)).date().isoformat())) or 0)
