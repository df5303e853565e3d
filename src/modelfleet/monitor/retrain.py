"""The retraining trigger: a served model that stays inaccurate or drifted gets a training job.

:class:`RetrainTrigger` reads a server's ``/monitor/summary`` (``modelfleet monitor watch``
polls it). When a model's live accuracy stays under ``min_accuracy`` (with at least
``min_labels`` labelled requests) or its largest drift score (PSI) stays over ``max_psi`` for
``sustain_s`` seconds, the trigger looks up the pipeline that trained the served version
(recorded in its lineage when a pipeline registered it; quantized variants are followed to
the version they came from) and queues it again with the same parameters. By default it only
says what it would submit; ``auto=True`` (``--auto-retrain``) submits, through a
:class:`~modelfleet.monitor.chain.RetrainChain` when one is given (a Kubernetes Job, then
the gate and the promotion to the release stage followed). One model is not retrained twice
within ``cooldown_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelfleet.config import Settings
from modelfleet.errors import ModelfleetError
from modelfleet.monitor.chain import RetrainChain


@dataclass(frozen=True)
class RetrainPolicy:
    """When a served model counts as needing retraining."""

    min_accuracy: float | None = 0.8
    max_psi: float | None = 0.2
    min_labels: int = 20
    sustain_s: float = 300.0
    cooldown_s: float = 3600.0

    def breach(self, model: Mapping[str, Any]) -> str | None:
        """Why this summary entry breaches the policy now, or None."""
        accuracy = model.get("accuracy") or {}
        live = accuracy.get("live")
        labelled = accuracy.get("labelled_requests") or 0
        if (
            self.min_accuracy is not None
            and live is not None
            and labelled >= self.min_labels
            and live < self.min_accuracy
        ):
            return (
                f"live accuracy {live:.3f} < {self.min_accuracy:g} "
                f"over {labelled} labelled requests"
            )
        drift = model.get("drift") or {}
        psi = drift.get("max_psi")
        if self.max_psi is not None and psi is not None and psi > self.max_psi:
            scores: Mapping[str, float] = drift.get("psi") or {}
            worst = max(scores, key=lambda f: scores[f]) if scores else "?"
            return f"input drift PSI {psi:.3f} > {self.max_psi:g} (worst feature {worst})"
        return None


@dataclass
class Decision:
    """One firing of the trigger."""

    model: str
    version: str
    reason: str
    pipeline: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    job_id: int | None = None
    submitted: bool = False
    problem: str | None = None

    def describe(self) -> str:
        """One line for people and logs."""
        head = f"{self.model}:{self.version}: {self.reason}"
        if self.problem:
            return f"{head}; cannot retrain: {self.problem}"
        params = " ".join(f"--param {k}={v}" for k, v in self.params.items())
        command = f"modelfleet jobs submit {self.pipeline} {params}".rstrip()
        if self.submitted:
            return f"{head}; submitted job {self.job_id}: {command}"
        return f"{head}; would submit (dry run, pass --auto-retrain): {command}"


def training_pipeline(registry: Any, name: str, version: str) -> tuple[str, dict[str, Any]]:
    """The pipeline file and parameters that produced ``name:version`` (or its parent)."""
    current = registry.get(f"{name}:{version}")
    seen: set[int] = set()
    while current is not None and current.version not in seen:
        seen.add(current.version)
        source = current.lineage.extra.get("pipeline_source")
        if source:
            return str(source), dict(current.params)
        parent = current.lineage.parent_version
        current = registry.get(f"{name}:{parent}") if parent else None
    raise ModelfleetError(
        f"{name}:{version} was not registered by a pipeline run, so there is nothing to rerun",
        hint="train it with 'modelfleet jobs submit PIPELINE.py' (or 'pipeline run') so the "
        "lineage records its pipeline",
    )


class RetrainTrigger:
    """Turns a stream of summaries into (at most one per cooldown) retraining jobs."""

    def __init__(
        self,
        policy: RetrainPolicy,
        settings: Settings,
        *,
        auto: bool = False,
        models: set[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        chain: RetrainChain | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.policy = policy
        self.chain = chain
        self.overrides = dict(overrides or {})  # e.g. a newer data snapshot than last time
        self.settings = settings
        self.auto = auto
        self.models = models
        self.clock = clock
        self._since: dict[str, float] = {}
        self._fired: dict[str, float] = {}

    def observe(self, summary: Mapping[str, Any]) -> list[Decision]:
        """Check every served model; returns the decisions taken this round."""
        now = self.clock()
        decisions = []
        for model in summary.get("models", []):
            name, version = model.get("name"), model.get("version")
            if not name or version is None or (self.models and name not in self.models):
                continue
            reason = self.policy.breach(model)
            if reason is None:
                self._since.pop(name, None)
                continue
            since = self._since.setdefault(name, now)
            cooling = now - self._fired.get(name, -float("inf")) < self.policy.cooldown_s
            if now - since < self.policy.sustain_s or cooling:
                continue
            self._fired[name] = now
            held = f" for {now - since:.0f} s" if self.policy.sustain_s else ""
            decisions.append(self._fire(name, str(version), reason + held))
        return decisions

    def pending(self) -> dict[str, float]:
        """Models breaching now, with how long (seconds) they have been."""
        now = self.clock()
        return {name: now - since for name, since in self._since.items()}

    def _fire(self, name: str, version: str, reason: str) -> Decision:
        from modelfleet.registry import Registry

        decision = Decision(name, version, reason)
        try:
            with Registry.open(self.settings) as registry:
                decision.pipeline, decision.params = training_pipeline(registry, name, version)
            decision.params.update(self.overrides)
        except ModelfleetError as exc:
            decision.problem = str(exc)
            return decision
        if self.auto and self.chain is not None:
            decision.job_id = self.chain.submit(name, decision.pipeline, decision.params, reason)
            decision.submitted = True
        elif self.auto:
            from modelfleet.jobs import JobQueue

            queue = JobQueue(self.settings.db_url)
            try:
                job = queue.submit(decision.pipeline, decision.params, user="modelfleet-monitor")
            finally:
                queue.close()
            decision.job_id, decision.submitted = job.id, True
        return decision
