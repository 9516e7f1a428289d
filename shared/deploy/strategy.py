"""How a deployment moves traffic: the candidate's shares, and the bake after each step."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Strategy"]


@dataclass(frozen=True)
class Strategy:
    """Traffic shares for the candidate, one bake of ``bake_s`` seconds after each step.

    All-at-once is the single step ``(1.0,)``; canary is an increasing sequence ending at 1.0.
    """

    steps: tuple[float, ...] = (1.0,)
    bake_s: float = 0.0
    poll_s: float = 1.0

    def __post_init__(self) -> None:
        steps = self.steps
        if not steps or not math.isclose(steps[-1], 1.0) or any(not 0 < s <= 1 for s in steps):
            raise ValueError(f"steps must be in (0, 1] and end at 1.0, got {steps}")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"steps must increase, got {steps}")
        if self.bake_s < 0 or self.poll_s <= 0:
            raise ValueError("bake_s must be >= 0 and poll_s > 0")

    @classmethod
    def all_at_once(cls, bake_s: float = 0.0, poll_s: float = 1.0) -> Strategy:
        return cls((1.0,), bake_s, poll_s)

    @classmethod
    def canary(
        cls, steps: Sequence[float] = (0.1, 0.5, 1.0), bake_s: float = 0.0, poll_s: float = 1.0
    ) -> Strategy:
        return cls(tuple(float(s) for s in steps), bake_s, poll_s)

    @property
    def name(self) -> str:
        return "all-at-once" if len(self.steps) == 1 else "canary " + "/".join(f"{s:.0%}" for s in self.steps)
