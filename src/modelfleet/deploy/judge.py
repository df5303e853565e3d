"""The canary judge: the candidate's figures against the stable's, over the same window.

Rules, in order (defaults in :class:`Thresholds`):

1. traffic: each track answered at least ``min_requests`` requests in the window, else the
   verdict is ``not-enough-traffic`` and nothing else is judged. It does not promote: the
   release rolls back (fail safe) unless a longer window gathers enough;
2. errors: the canary fails when its 5xx ratio is above the stable's plus ``error_margin``
   and above ``error_floor`` (a ratio at or below the floor never fails);
3. latency: the canary fails when its p99 is above the stable's times ``max_p99_ratio`` and
   above ``p99_floor_ms`` (so sub-millisecond noise never fails);
4. accuracy: judged only when both tracks have ``min_labelled`` labelled rows in the window
   (feedback); the canary fails when its live accuracy is below the stable's minus
   ``accuracy_delta``.

The verdict is ``promote`` when no rule fails, else ``rollback`` with every failing rule's
reason. An :class:`Observation` reads both tracks' counters at the start of the window and
their figures since; :func:`watch` waits out the window, judges, and waits longer (from the
same start) while traffic is short.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from modelfleet.deploy.figures import Counters, Figures, read_exposition, window_counters
from modelfleet.deploy.scrape import MetricsSource
from modelfleet.errors import DeployError

Decision = Literal["promote", "rollback", "not-enough-traffic"]
STABLE, CANARY = "stable", "canary"


@dataclass(frozen=True)
class Thresholds:
    """How much worse than the stable the canary may be."""

    min_requests: int = 100
    error_margin: float = 0.005
    error_floor: float = 0.01
    max_p99_ratio: float = 1.5
    p99_floor_ms: float = 10.0
    min_labelled: int = 100
    accuracy_delta: float = 0.02

    def __post_init__(self) -> None:
        checks = [
            (self.min_requests >= 1, "--min-requests must be at least 1"),
            (0 <= self.error_margin <= 1, "--error-margin must be 0-1"),
            (0 <= self.error_floor <= 1, "--error-floor must be 0-1"),
            (self.max_p99_ratio >= 1, "--max-p99-ratio must be at least 1"),
            (self.p99_floor_ms >= 0, "--p99-floor-ms must be 0 or more"),
            (self.min_labelled >= 1, "--min-labelled must be at least 1"),
            (0 <= self.accuracy_delta <= 1, "--min-accuracy-delta must be 0-1"),
        ]
        for ok, message in checks:
            if not ok:
                raise DeployError(message)


@dataclass(frozen=True)
class Check:
    """One rule's outcome: ``passed`` is None when the rule was not judged."""

    rule: str
    passed: bool | None
    detail: str


def _pct(ratio: float) -> str:
    return f"{ratio:.2%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _traffic(stable: Figures, canary: Figures, limits: Thresholds) -> Check:
    short = [
        f"{track} {figures.requests:.0f}"
        for track, figures in ((STABLE, stable), (CANARY, canary))
        if figures.requests < limits.min_requests
    ]
    if short:
        return Check(
            "traffic",
            False,
            f"not enough traffic in {canary.seconds:.0f} s: {', '.join(short)} requests, "
            f"need {limits.min_requests} per track (give a longer --window or --max-window)",
        )
    return Check(
        "traffic", True, f"{stable.requests:.0f} stable and {canary.requests:.0f} canary requests"
    )


def _errors(stable: Figures, canary: Figures, limits: Thresholds) -> Check:
    limit = max(stable.error_ratio + limits.error_margin, limits.error_floor)
    passed = canary.error_ratio <= limit
    word = "within" if passed else "above"
    return Check(
        "errors",
        passed,
        f"canary 5xx ratio {_pct(canary.error_ratio)} {word} the limit {_pct(limit)} "
        f"(stable {_pct(stable.error_ratio)})",
    )


def _latency(stable: Figures, canary: Figures, limits: Thresholds) -> Check:
    if stable.p99_ms is None or canary.p99_ms is None:
        return Check("latency", None, "no latency histogram in the window")
    limit = max(stable.p99_ms * limits.max_p99_ratio, limits.p99_floor_ms)
    passed = canary.p99_ms <= limit
    word = "within" if passed else "above"
    return Check(
        "latency",
        passed,
        f"canary p99 {_ms(canary.p99_ms)} {word} the limit {_ms(limit)} "
        f"(stable {_ms(stable.p99_ms)})",
    )


def _accuracy(stable: Figures, canary: Figures, limits: Thresholds) -> Check:
    if (
        stable.accuracy is None
        or canary.accuracy is None
        or (min(stable.labelled, canary.labelled) < limits.min_labelled)
    ):
        return Check(
            "accuracy",
            None,
            f"not judged: {stable.labelled:.0f} stable and {canary.labelled:.0f} canary "
            f"labelled rows, need {limits.min_labelled} each",
        )
    limit = stable.accuracy - limits.accuracy_delta
    passed = canary.accuracy >= limit
    word = "within" if passed else "below"
    return Check(
        "accuracy",
        passed,
        f"canary live accuracy {canary.accuracy:.3f} {word} the limit {limit:.3f} "
        f"(stable {stable.accuracy:.3f}; {canary.labelled:.0f} and {stable.labelled:.0f} rows)",
    )


@dataclass(frozen=True)
class Verdict:
    """The judge's decision, every rule's outcome, and the figures it read."""

    decision: Decision
    stable: Figures
    canary: Figures
    checks: tuple[Check, ...]
    thresholds: Thresholds

    @property
    def promote(self) -> bool:
        """Whether the canary may replace the stable."""
        return self.decision == "promote"

    @property
    def reasons(self) -> list[str]:
        """Why it may not (empty when it may)."""
        return [c.detail for c in self.checks if c.passed is False]

    def summary(self) -> str:
        """One line: the decision and why (the audit trail's reason)."""
        figures = (
            f"{self.canary.requests:.0f}/{self.stable.requests:.0f} requests, "
            f"5xx {_pct(self.canary.error_ratio)}/{_pct(self.stable.error_ratio)}, "
            f"p99 {_ms(self.canary.p99_ms)}/{_ms(self.stable.p99_ms)}"
        )
        if self.canary.accuracy is not None and self.stable.accuracy is not None:
            figures += f", accuracy {self.canary.accuracy:.3f}/{self.stable.accuracy:.3f}"
        why = "; ".join(self.reasons) or "every rule passed"
        return f"{self.decision} after {self.canary.seconds:.0f} s, canary/stable {figures}: {why}"

    def as_dict(self) -> dict[str, Any]:
        """The verdict as JSON-ready values."""
        return {
            "decision": self.decision,
            "reasons": self.reasons,
            "checks": [asdict(c) for c in self.checks],
            "figures": {STABLE: self.stable.as_dict(), CANARY: self.canary.as_dict()},
            "thresholds": asdict(self.thresholds),
        }


def judge(stable: Figures, canary: Figures, thresholds: Thresholds | None = None) -> Verdict:
    """Compare the canary's window with the stable's by the rules above."""
    limits = thresholds or Thresholds()
    traffic = _traffic(stable, canary, limits)
    if not traffic.passed:
        return Verdict("not-enough-traffic", stable, canary, (traffic,), limits)
    checks = (
        traffic,
        _errors(stable, canary, limits),
        _latency(stable, canary, limits),
        _accuracy(stable, canary, limits),
    )
    decision: Decision = "rollback" if any(c.passed is False for c in checks) else "promote"
    return Verdict(decision, stable, canary, checks, limits)


class Observation:
    """Both tracks' counters at the start of a window, and their figures since then.

    ``versions`` maps each track to the model version its pods serve; each track's pods
    report their own version's series, which are the only ones read.
    """

    def __init__(
        self,
        source: MetricsSource,
        model: str,
        versions: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.model = model
        self.versions = dict(versions)
        self.clock = clock
        self.started = clock()
        self.baseline = {track: self._read(track) for track in self.versions}

    def _read(self, track: str) -> dict[str, Counters]:
        version = self.versions[track]
        return {
            pod: read_exposition(text, self.model, version)
            for pod, text in self.source.expositions(track).items()
        }

    def figures(self) -> dict[str, Figures]:
        """Every track's figures from the start of the window until now."""
        seconds = self.clock() - self.started
        found = {}
        for track, version in self.versions.items():
            now = self._read(track)
            counters = window_counters(self.baseline[track], now)
            found[track] = Figures.of(version, counters, pods=len(now), seconds=seconds)
        return found


def watch(
    source: MetricsSource,
    model: str,
    versions: Mapping[str, str],
    thresholds: Thresholds,
    *,
    window_s: float,
    max_window_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = lambda _: None,
) -> Verdict:
    """Judge the tracks over ``window_s``; while traffic is short, keep the same start and
    judge again a window later, up to ``max_window_s`` in all."""
    observation = Observation(source, model, versions)
    longest = max_window_s or window_s
    waited = 0.0
    while True:
        step = min(window_s, longest - waited)
        say(f"judging the canary for {step:g} s")
        sleep(step)
        waited += step
        figures = observation.figures()
        verdict = judge(figures[STABLE], figures[CANARY], thresholds)
        if verdict.decision != "not-enough-traffic" or waited >= longest:
            return verdict
        stable, canary = verdict.stable.requests, verdict.canary.requests
        say(f"too little traffic so far ({stable:.0f} stable, {canary:.0f} canary requests)")
