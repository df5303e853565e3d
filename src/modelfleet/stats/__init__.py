"""Statistics of model inputs (the training profile, drift scores against it) and of scraped
counters (their increase, histogram quantiles): numpy only.

Used by the SDK and the pipeline (to build a version's profile) and by the server (to score
live inputs against it). Nothing here does I/O or imports another modelfleet package but the
tensor types, so it runs the same in a notebook, a training job and the serving image.
"""

from __future__ import annotations

from modelfleet.stats.counters import histogram_quantile, increase
from modelfleet.stats.drift import DriftWindow, drift_scores, ks_statistic, psi
from modelfleet.stats.profile import PROFILE_MEDIA_TYPE, build_profile, feature_columns

__all__ = [
    "PROFILE_MEDIA_TYPE",
    "DriftWindow",
    "build_profile",
    "drift_scores",
    "feature_columns",
    "histogram_quantile",
    "increase",
    "ks_statistic",
    "psi",
]
