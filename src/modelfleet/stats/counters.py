"""Reading Prometheus counters and histograms scraped at two moments (pure Python).

The server's own summary (``/monitor/summary``) and the release judge both compare two
scrapes of the same process' counters; they read them by these rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def increase(new: float, before: float) -> float:
    """How much a counter grew; one that went down was reset (a restart) and counts from 0."""
    return new - before if new >= before else new


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The q-quantile of cumulative histogram buckets (``le`` → count), as Prometheus does.

    Linear within the bucket the rank falls in; a rank beyond the last finite bucket gives
    that bucket's edge (all that is known). None without observations.
    """
    edges = sorted(buckets)
    total = buckets[edges[-1]] if edges else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for le in edges:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return lower
            if count == below:
                return le
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower
