"""Running a pipeline: chain the steps, reuse cached outputs, register, gate, report.

A step's output is cached under sha256(step name, step code, the params it reads, the
digests of its inputs, the storage format), so a re-run skips every step whose code, inputs
and params did not change, and says so in the report. A run that is an attempt of a queued
job records the job on the version it registers; a retry of that job finds the version and
reuses it (and its promotion), so a job registers and promotes at most once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from modelfleet.config import Settings, load_settings
from modelfleet.db import ModelRow, StepCacheRow, VersionRow, insert_or_ignore
from modelfleet.errors import ConfigError, ModelfleetError
from modelfleet.pipeline import codec
from modelfleet.pipeline.steps import Step
from modelfleet.pipeline.validation import DataValidationError
from modelfleet.refs import STAGES
from modelfleet.registry import ModelVersion, Registry, parse_requirements

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registration:
    """Which step outputs make the registered version."""

    name: str
    model: str
    metrics: str
    sample: str
    labels: str | None = None
    task: str | None = None


@dataclass
class Pipeline:
    """Steps, what to register from them, and the gate a new version must pass."""

    name: str
    steps: Sequence[Step]
    register: Registration | None = None
    gate: Sequence[str] = ()
    promote_to: str = "dev"
    source: str | None = None  # the file it was loaded from: what a retrain job runs again

    def __post_init__(self) -> None:
        # A bad gate or stage fails here, when the pipeline is loaded, not after training
        # and registering a version it then cannot judge or promote.
        parse_requirements(list(self.gate))
        if self.promote_to.lower() not in STAGES:
            raise ConfigError(
                f"pipeline {self.name!r}: promote_to={self.promote_to!r} is not a stage",
                hint=f"use one of {', '.join(STAGES)}",
            )


@dataclass
class StepReport:
    """One line of the run report."""

    name: str
    status: str  # ran | cached | failed
    seconds: float
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class RunReport:
    """What a run did and decided."""

    run_id: str
    pipeline: str
    params: dict[str, Any]
    steps: list[StepReport] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    version: str | None = None
    gate: dict[str, Any] = field(default_factory=dict)
    validation: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when every step ran and nothing failed."""
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (what jobs store as their result)."""
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "params": self.params,
            "steps": [vars(s) for s in self.steps],
            "metrics": self.metrics,
            "version": self.version,
            "gate": self.gate,
            "validation": self.validation[:50],
            "error": self.error,
        }


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """``["n=100", "lr=0.1", "name=x"]`` → typed params (JSON values where they parse)."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ModelfleetError(f"invalid param {pair!r}", hint="write --param key=value")
        try:
            params[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.strip()] = raw
    return params


def load_pipeline(path: str | Path) -> Pipeline:
    """Import a pipeline file and return its ``pipeline`` object."""
    file = Path(path)
    if not file.is_file():
        raise ModelfleetError(f"pipeline file {file} does not exist", hint="check the path")
    spec = importlib.util.spec_from_file_location(f"modelfleet_pipeline_{file.stem}", file)
    if spec is None or spec.loader is None:
        raise ModelfleetError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ModelfleetError:  # already says what is wrong and how to fix it
        raise
    except Exception as exc:  # the user's file: report what broke
        raise ModelfleetError(f"importing {file} failed: {type(exc).__name__}: {exc}") from exc
    found = getattr(module, "pipeline", None)
    if not isinstance(found, Pipeline):
        raise ModelfleetError(
            f"{file} defines no 'pipeline' (a modelfleet.pipeline.Pipeline)",
            hint="end the file with: pipeline = Pipeline(name=..., steps=[...])",
        )
    found.source = str(file.resolve())
    return found


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__}{list(shape)}"
    if isinstance(value, dict):
        return f"dict({len(value)} keys)"
    return type(value).__name__


class _StepCache:
    """Step outputs in the artifact store, indexed by cache key in the registry's database.

    Each output is stored on its own (content addressed); the cached entry is a small JSON
    manifest naming them, so a step with several outputs needs no container format.
    """

    MANIFEST = "application/vnd.modelfleet.step+json"

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.database = registry.database

    def get(self, key: str) -> tuple[dict[str, Any], dict[str, str]] | None:
        """``(values, digests)`` of a cached step, or None."""
        with self.database.reading() as session:
            entry = session.execute(
                select(StepCacheRow.artifact_key, StepCacheRow.sha256).where(
                    StepCacheRow.key == key
                )
            ).one_or_none()
        if entry is None:
            return None
        store = self.registry.artifacts
        manifest = json.loads(store.get_bytes(entry.artifact_key, entry.sha256))
        values, digests = {}, {}
        for name, part in manifest.items():
            values[name] = codec.decode(store.get_bytes(part["key"], part["sha256"]), part["media"])
            digests[name] = part["sha256"]
        return values, digests

    def put(self, key: str, step: str, outputs: dict[str, Any]) -> dict[str, str]:
        """Store every output and the manifest; returns the outputs' digests."""
        store = self.registry.artifacts
        manifest = {}
        for name, value in outputs.items():
            data, media = codec.encode(value)
            stored = store.put_bytes(data)
            manifest[name] = {"key": stored.key, "sha256": stored.sha256, "media": media}
        entry = store.put_bytes(json.dumps(manifest, sort_keys=True).encode())
        now = datetime.now(UTC)
        with self.database.writing() as session:
            # Two runs may finish the same step at once; either entry is a valid one.
            inserted = insert_or_ignore(
                session,
                StepCacheRow,
                key=key,
                step=step,
                artifact_key=entry.key,
                sha256=entry.sha256,
                media_type=self.MANIFEST,
                created_at=now,
            )
            if not inserted:
                # A run that ignored the cache replaces the entry: a step whose output varies
                # from run to run (a random seed, a timestamp) would otherwise leave a damaged
                # entry in place, and `use_cache=False` could never repair it.
                session.execute(
                    update(StepCacheRow)
                    .where(StepCacheRow.key == key)
                    .values(artifact_key=entry.key, sha256=entry.sha256, created_at=now)
                )
        return {name: part["sha256"] for name, part in manifest.items()}


def _cache_key(step: Step, used: dict[str, Any], inputs: dict[str, str]) -> str:
    payload = json.dumps(
        {
            "step": step.name,
            "code": step.code_hash,
            "params": used,
            "inputs": inputs,
            "format": codec.FORMAT,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def run_pipeline(
    pipeline: Pipeline,
    params: dict[str, Any] | None = None,
    *,
    settings: Settings | None = None,
    registry: Registry | None = None,
    run_id: str | None = None,
    use_cache: bool = True,
    say: Callable[[str], None] = print,
    job: int | None = None,
) -> RunReport:
    """Run every step, register the result, apply the gate; returns the report.

    ``job`` is the queued job this run is an attempt of: the version it registers records
    it, and a later attempt of the same job reuses that version instead of adding another.
    """
    settings = settings or load_settings()
    given = dict(params or {})
    report = RunReport(run_id or uuid.uuid4().hex[:12], pipeline.name, given)
    own = registry is None
    reg = registry or Registry.open(settings)
    try:
        ran = _run_steps(pipeline, given, reg, report, use_cache, say)
        if ran is not None and pipeline.register is not None:
            _register(pipeline, given, *ran, reg, report, settings, say, job)
    finally:
        if own:
            reg.close()
    return report


def _run_steps(
    pipeline: Pipeline,
    given: dict[str, Any],
    reg: Registry,
    report: RunReport,
    use_cache: bool,
    say: Callable[[str], None],
) -> tuple[dict[str, Any], dict[str, str]] | None:
    cache = _StepCache(reg)
    values: dict[str, Any] = {}
    digests: dict[str, str] = {}
    for step in pipeline.steps:
        args, used, inputs = {}, {}, {}
        for name in step.parameters:
            if name in values:
                args[name], inputs[name] = values[name], digests[name]
            elif name in given:
                args[name] = used[name] = given[name]
            elif name in step.defaults:
                args[name] = used[name] = step.defaults[name]
            else:
                raise ModelfleetError(
                    f"step {step.name!r} needs {name!r}, which no earlier step outputs and no "
                    "param gives",
                    hint=f"add --param {name}=... or a step that returns {name!r}",
                )
        key = _cache_key(step, used, inputs)
        started = time.monotonic()
        hit = cache.get(key) if use_cache and step.cache else None
        if hit is not None:
            outputs, produced = hit
            status = "cached"
        else:
            try:
                result = step.fn(**args)
            except DataValidationError as exc:
                report.validation = exc.report
                report.steps.append(StepReport(step.name, "failed", time.monotonic() - started))
                report.error = f"step {step.name!r}: {exc}"
                say(f"  {step.name}: FAILED {exc}")
                return None
            outputs = _unpack(step, result)
            status = "ran"
            produced = (
                cache.put(key, step.name, outputs)
                if step.cache
                else {
                    name: hashlib.sha256(codec.encode(value)[0]).hexdigest()
                    for name, value in outputs.items()
                }
            )
        values.update(outputs)
        digests.update(produced)
        seconds = time.monotonic() - started
        report.steps.append(
            StepReport(
                step.name, status, round(seconds, 3), {n: _describe(v) for n, v in outputs.items()}
            )
        )
        done = "cached, skipped" if status == "cached" else f"ran in {seconds:.2f} s"
        say(f"  {step.name}: {done}")
    return values, digests


def _unpack(step: Step, result: Any) -> dict[str, Any]:
    if len(step.outputs) == 1:
        return {step.outputs[0]: result}
    if not isinstance(result, tuple | list) or len(result) != len(step.outputs):
        raise ModelfleetError(
            f"step {step.name!r} must return {len(step.outputs)} values {step.outputs}"
        )
    return dict(zip(step.outputs, result, strict=True))


def _register(
    pipeline: Pipeline,
    given: dict[str, Any],
    values: dict[str, Any],
    digests: dict[str, str],
    reg: Registry,
    report: RunReport,
    settings: Settings,
    say: Callable[[str], None],
    job: int | None,
) -> None:
    from modelfleet import sdk
    from modelfleet.signature import prepare_inputs
    from modelfleet.stats import build_profile

    spec = pipeline.register
    assert spec is not None  # checked by the caller
    missing = [n for n in (spec.model, spec.metrics, spec.sample) if n not in values]
    if missing:
        raise ModelfleetError(f"registration needs outputs {missing}, which no step returns")
    metrics = {k: float(v) for k, v in dict(values[spec.metrics]).items()}
    report.metrics = metrics
    sample = values[spec.sample]
    earlier = _registered_by_job(reg, spec.name, job) if job is not None else None
    if earlier is not None:
        # A retry of a job whose earlier attempt registered before its worker was lost: the
        # job's effect is that version (and its metrics), never a second one.
        report.version, report.metrics = earlier.ref, dict(earlier.metrics)
        say(f"  {earlier.ref} was registered by an earlier attempt of job {job}; reusing it")
        _gate(pipeline, earlier, reg, report, say)
        return
    existing = _same_model(reg, spec.name, digests[spec.model])
    if existing is not None:
        report.version = existing
        report.gate = {"passed": None, "reason": f"unchanged: {existing} holds this model"}
        say(f"  unchanged: {existing} already holds this model; nothing registered")
        return
    code = hashlib.sha256("".join(s.code_hash for s in pipeline.steps).encode()).hexdigest()
    version = sdk.register(
        values[spec.model],
        name=spec.name,
        sample_input=_head(sample, 200),
        metrics=metrics,
        params=given,
        tags={"pipeline": pipeline.name, "run": report.run_id},
        task=spec.task,
        training_data=sample,
        lineage_extra={
            "pipeline": pipeline.name,
            "pipeline_source": pipeline.source,
            "run_id": report.run_id,
            "code_sha256": code,
            "model_sha256": digests[spec.model],
            **({"job": job} if job is not None else {}),
        },
        profile_from=lambda signature: build_profile(
            prepare_inputs(signature, sample),
            values.get(spec.labels) if spec.labels else None,
        ),
        settings=settings,
        registry=reg,
    )
    report.version = version.ref
    say(f"  registered {version.ref} with {', '.join(f'{k}={v:.4f}' for k, v in metrics.items())}")
    _gate(pipeline, version, reg, report, say)


def _gate(
    pipeline: Pipeline,
    version: ModelVersion,
    reg: Registry,
    report: RunReport,
    say: Callable[[str], None],
) -> None:
    """Promote ``version`` when it passes the gate, unless this run's job already did."""
    from modelfleet import sdk

    failures = [
        failure
        for requirement in parse_requirements(list(pipeline.gate))
        if (failure := requirement.failure(dict(version.metrics))) is not None
    ]
    if failures:
        report.gate = {"passed": False, "reason": "; ".join(failures), "stage": None}
        say(f"  gate: not promoted ({'; '.join(failures)})")
        return
    reason = f"gate passed: {', '.join(pipeline.gate)}" if pipeline.gate else "no gate"
    stage = pipeline.promote_to.lower()
    if any(e.stage == stage and e.version == version.version for e in reg.history(version.name)):
        say(f"  gate: {version.ref} was already promoted to {pipeline.promote_to}")
    else:
        sdk.promote(
            version.ref,
            to=pipeline.promote_to,
            reason=f"{reason} (run {report.run_id})",
            registry=reg,
        )
        say(f"  gate: promoted {version.ref} to {pipeline.promote_to} ({reason})")
    report.gate = {"passed": True, "reason": reason, "stage": pipeline.promote_to}


def _registered_by_job(reg: Registry, name: str, job: int) -> ModelVersion | None:
    """The version of ``name`` an earlier attempt of ``job`` registered, if any."""
    with reg.database.reading() as session:
        rows = session.execute(
            select(VersionRow.version, VersionRow.lineage)
            .join(ModelRow)
            .where(ModelRow.name == name)
            .order_by(VersionRow.version.desc())
        ).all()
    number = next(
        (n for n, lineage in rows if (lineage.get("extra") or {}).get("job") == job), None
    )
    return None if number is None else reg.get(f"{name}:{number}")


def _same_model(reg: Registry, name: str, digest: str) -> str | None:
    """The latest version of ``name`` if a run already registered exactly this model."""
    from modelfleet.errors import ModelNotFoundError

    try:
        latest = reg.get(name)
    except ModelNotFoundError:
        return None
    return latest.ref if latest.lineage.extra.get("model_sha256") == digest else None


def _head(sample: Any, n: int) -> Any:
    if hasattr(sample, "iloc"):
        return sample.iloc[:n]
    if isinstance(sample, dict):
        return {k: v[:n] for k, v in sample.items()}
    return sample[:n]
