"""Delay families of the benchmark grid: how long after the impression the late clicks come.

Each family draws the delays of the clicks that come after the join's window ``W`` (the late share of
the clicks; the others click within ``W``). Some fall beyond the horizon ``H`` (exponential and Weibull
tails), as in a live stream: the join never attributes those.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

MINUTE, HOUR = 60_000.0, 3_600_000.0
WINDOW_MS, HORIZON_MS = 10 * MINUTE, 24 * HOUR


def _log_uniform(rng: np.random.Generator, n: int) -> np.ndarray:
    """Today's generator (jobs.generate): log-uniform in (W, H]."""
    return np.exp(rng.uniform(math.log(WINDOW_MS + 1), math.log(HORIZON_MS), n))


def _uniform(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform over 11 min - 20 h (issue #21's stream)."""
    return rng.uniform(11 * MINUTE, 20 * HOUR, n)


def _exponential(rng: np.random.Generator, n: int) -> np.ndarray:
    """W plus an exponential delay with a 3 h mean (most late clicks within half a day)."""
    return WINDOW_MS + rng.exponential(3 * HOUR, n)


def _weibull(rng: np.random.Generator, n: int) -> np.ndarray:
    """W plus a heavy-tailed Weibull (shape 0.5, scale 2 h): 3% beyond the horizon."""
    return WINDOW_MS + 2 * HOUR * rng.weibull(0.5, n)


def _spike(rng: np.random.Generator, n: int) -> np.ndarray:
    """A mixture: 60% in a spike a few minutes after the window (median 14 min), 40% log-normal
    around 3 h."""
    spike = np.maximum(np.exp(rng.normal(math.log(14 * MINUTE), 0.15, n)), WINDOW_MS + 1000)
    broad = WINDOW_MS + np.exp(rng.normal(math.log(3 * HOUR), 1.0, n))
    return np.where(rng.random(n) < 0.6, spike, broad)


FAMILIES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "log-uniform": _log_uniform,
    "uniform": _uniform,
    "exponential": _exponential,
    "weibull": _weibull,
    "spike": _spike,
}


def late_delays(family: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` late-click delays in ms (each > W) of ``family``."""
    try:
        draw = FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown delay family {family!r}, expected one of {', '.join(FAMILIES)}") from None
    return np.maximum(draw(rng, n), WINDOW_MS + 1.0)


def arrived_share(family: str, ages_ms: np.ndarray, draws: int = 400_000, seed: int = 12345) -> np.ndarray:
    """The true F: the share of a family's late clicks within the horizon with a delay up to each age."""
    delays = late_delays(family, np.random.default_rng(seed), draws)
    delays = np.sort(delays[delays <= HORIZON_MS])
    return np.searchsorted(delays, np.asarray(ages_ms, np.float64), side="right") / len(delays)
