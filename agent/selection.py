"""Which programs to refine: Thompson sampling over candidates, as in REX.

REX (Tang et al., 2024) treats every candidate as an arm with a Beta posterior
built from a heuristic score h in [0, 1] and the number of times N it has already
been refined::

    theta ~ Beta(1 + C * h, 1 + C * (1 - h) + N)

and refines the arm with the largest draw. C sets how much the score is trusted
(SOAR uses C = 20); each refinement of a candidate lowers its chance of being
picked again, so the search spreads over several good programs instead of
hammering the best one. Here h is the mean cell accuracy over the train pairs
(a wrong shape or a crash counts 0).
"""

from __future__ import annotations

import random
from typing import Sequence

from agent.candidate import Behaviour

DEFAULT_C = 20.0


def thompson_draw(score: float, times_refined: int, rng: random.Random, c: float = DEFAULT_C) -> float:
    """One draw from the REX posterior of a candidate."""
    h = min(max(score, 0.0), 1.0)
    return rng.betavariate(1.0 + c * h, 1.0 + c * (1.0 - h) + times_refined)


def thompson_order(
    behaviours: Sequence[Behaviour], rng: random.Random, *, c: float = DEFAULT_C
) -> list[tuple[float, int]]:
    """One REX draw per behaviour, as ``(draw, index)`` pairs, best draws first (ties: earlier first)."""
    draws = [(thompson_draw(b.train_accuracy, b.times_refined, rng, c), i) for i, b in enumerate(behaviours)]
    draws.sort(key=lambda d: (-d[0], d[1]))
    return draws


def select_parents(
    behaviours: Sequence[Behaviour], k: int, rng: random.Random, *, c: float = DEFAULT_C
) -> list[Behaviour]:
    """Pick up to ``k`` distinct parents by one Thompson draw each, best draws first.

    Counts each pick in ``times_refined``. Deterministic for a given ``rng`` state
    and candidate order.
    """
    if k <= 0 or not behaviours:
        return []
    chosen = [behaviours[i] for _, i in thompson_order(behaviours, rng, c=c)[:k]]
    for b in chosen:
        b.times_refined += 1
    return chosen
