"""A fixed discrete distribution drawn from in O(log n) with one random number.

>>> import random
>>> coin = Categorical({"heads": 1, "tails": 3})
>>> sorted({coin.draw(random.Random(1)) for _ in range(10)} | {"heads", "tails"})
['heads', 'tails']
"""

from __future__ import annotations

import random
from bisect import bisect
from collections.abc import Mapping
from itertools import accumulate
from typing import Generic, TypeVar

T = TypeVar("T")


class Categorical(Generic[T]):
    """Values with relative weights; `draw(rng)` returns one value with probability weight / total."""

    __slots__ = ("values", "cum", "total")

    def __init__(self, weights: Mapping[T, float]) -> None:
        self.values = list(weights)
        self.cum = list(accumulate(float(w) for w in weights.values()))
        self.total = self.cum[-1]

    def draw(self, rng: random.Random) -> T:
        return self.values[bisect(self.cum, rng.random() * self.total)]

    def probability(self, value: T) -> float:
        i = self.values.index(value)
        return (self.cum[i] - (self.cum[i - 1] if i else 0.0)) / self.total
