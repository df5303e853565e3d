"""The Python entry points: register a model object or file, freeze, quantize and promote."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from modelfleet.config import Settings, load_settings
from modelfleet.datasets import LabeledData, decode_sample, encode_sample, read_data
from modelfleet.errors import AccuracyDropError, ModelfleetError, QuantizeError, RegistryError
from modelfleet.freeze import (
    ONNX_MEDIA_TYPE,
    Adapter,
    FrozenGraph,
    LoadedModel,
    Method,
    SourceBlob,
    adapter_for_framework,
    find_adapter,
    freeze_model,
    graph_signature,
    load_model_file,
    onnx_module,
    quantize_graph,
)
from modelfleet.refs import Stage, parse_stage, validate_name
from modelfleet.registry import (
    ArtifactPayload,
    Lineage,
    ModelVersion,
    Registry,
    Role,
    StageEvent,
    Task,
    Variant,
    VersionDraft,
    git_state,
    runtime_environment,
)
from modelfleet.registry import data_sha256 as digest_data
from modelfleet.signature import Signature, prepare_inputs
from modelfleet.stats import PROFILE_MEDIA_TYPE, build_profile

SAMPLE_MEDIA_TYPE = "application/x-npz"
logger = logging.getLogger(__name__)
_FRAMEWORK_PACKAGES = {"sklearn": ("scikit-learn", "skl2onnx", "skops"), "torch": ("torch",)}
_Choice = TypeVar("_Choice", bound=StrEnum)


def _choose(
    kind: type[_Choice],
    value: str | _Choice,
    what: str,
    error: type[ModelfleetError],
    allowed: tuple[_Choice, ...] | None = None,
) -> _Choice:
    """``value`` as one of ``allowed`` (default: every member), or ``error`` listing them."""
    allowed = allowed or tuple(kind)
    for choice in allowed:
        if value == choice.value:
            return choice
    names = ", ".join(c.value for c in allowed)
    raise error(f"unknown {what} {value!r}", hint=f"use one of {names}")


@contextmanager
def _registry(registry: Registry | None, settings: Settings | None) -> Iterator[Registry]:
    if registry is not None:
        yield registry
        return
    with Registry.open(settings or load_settings()) as opened:
        yield opened


def _clean_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    cleaned = {}
    for key, value in (metrics or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ModelfleetError(
                f"metric {key!r} must be a number, got {value!r}",
                hint="pass metrics as {'accuracy': 0.93}",
            ) from None
        if not math.isfinite(number):
            raise ModelfleetError(f"metric {key!r} must be finite, got {value!r}")
        cleaned[str(key)] = number
    return cleaned


def _clean_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        raise TypeError(type(value).__name__)

    try:
        return dict(json.loads(json.dumps(dict(params or {}), default=plain)))
    except TypeError as exc:
        raise ModelfleetError(
            f"params must be JSON values; {exc} is not", hint="convert it to str, int or float"
        ) from None


def register(
    model: Any,
    *,
    name: str,
    sample_input: Any = None,
    metrics: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    task: str | Task | None = None,
    training_data: Any = None,
    freeze: bool = True,
    lineage_extra: Mapping[str, Any] | None = None,
    profile_from: Any = None,
    settings: Settings | None = None,
    registry: Registry | None = None,
) -> ModelVersion:
    """Register a model object (scikit-learn, torch ``nn.Module``, ``onnx.ModelProto``).

    The model is stored in a safe format (skops, torch.export, ONNX), frozen to a verified
    ONNX graph unless ``freeze=False``, and recorded with its signature, metrics, params,
    tags and lineage. The reference profile that served inputs are checked against for drift
    is ``profile_from(signature)`` when given, else built from ``training_data``. Returns the
    new version.
    """
    adapter = find_adapter(model)
    loaded = LoadedModel(model, adapter, None)
    return _register(
        loaded,
        name=name,
        sample_input=sample_input,
        metrics=metrics,
        params=params,
        tags=tags,
        task=task,
        training_data=training_data,
        freeze=freeze,
        source_uri=None,
        settings=settings,
        registry=registry,
        lineage_extra=lineage_extra,
        profile_from=profile_from,
    )


def _profile(signature: Signature, profile_from: Any, training_data: Any) -> bytes | None:
    """The reference profile drift is measured against: given, or built from training data."""
    if profile_from is not None:
        return json.dumps(profile_from(signature), sort_keys=True).encode()
    if training_data is None or not signature.inputs:
        return None
    labels = None
    if isinstance(training_data, str | os.PathLike):
        # A file (the CLI's --training-data) is read like every data file: features, and
        # labels from its label column, which the profile keeps as the class balance.
        data = read_data(Path(training_data))
        training_data, labels = data.features, data.labels
    try:
        arrays = prepare_inputs(signature, training_data)
    except ModelfleetError as exc:
        logger.warning("no drift profile: the training data does not fit the signature: %s", exc)
        return None
    return json.dumps(build_profile(arrays, labels), sort_keys=True).encode()


def register_file(
    path: str | Path,
    *,
    name: str,
    sample_input: Any = None,
    trust: bool = False,
    metrics: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    task: str | Task | None = None,
    training_data: Any = None,
    freeze: bool = True,
    settings: Settings | None = None,
    registry: Registry | None = None,
) -> ModelVersion:
    """Register a model file (``.onnx``, ``.skops``, ``.pt2``, TorchScript ``.pt``).

    Pickle and joblib files are refused unless ``trust=True``.
    """
    validate_name(name)
    loaded = load_model_file(Path(path), trust=trust)
    return _register(
        loaded,
        name=name,
        sample_input=sample_input,
        metrics=metrics,
        params=params,
        tags=tags,
        task=task,
        training_data=training_data,
        freeze=freeze,
        source_uri=str(Path(path).resolve()),
        settings=settings,
        registry=registry,
    )


def _register(
    loaded: LoadedModel,
    *,
    name: str,
    sample_input: Any,
    metrics: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None,
    tags: Mapping[str, str] | None,
    task: str | Task | None,
    training_data: Any,
    freeze: bool,
    source_uri: str | None,
    settings: Settings | None,
    registry: Registry | None,
    lineage_extra: Mapping[str, Any] | None = None,
    profile_from: Any = None,
) -> ModelVersion:
    validate_name(name)
    settings = settings or load_settings()
    clean_metrics, clean_params = _clean_metrics(metrics), _clean_params(params)
    adapter = loaded.adapter
    resolved_task = (
        _choose(Task, task, "task", RegistryError) if task else adapter.task(loaded.model)
    )
    model = adapter.normalize(loaded.model, sample_input)
    source = loaded.source or adapter.serialize(model, sample_input)
    frozen = _freeze(model, adapter, sample_input, resolved_task, settings) if freeze else None
    payloads = [ArtifactPayload(Role.SOURCE, source.data, source.media_type)]
    if frozen is not None:
        payloads.append(ArtifactPayload(Role.ONNX, frozen.graph, ONNX_MEDIA_TYPE))
    if sample_input is not None:
        payloads.append(
            ArtifactPayload(Role.SAMPLE, encode_sample(sample_input), SAMPLE_MEDIA_TYPE)
        )
    signature = _signature(frozen, model, adapter, sample_input)
    profile = _profile(signature, profile_from, training_data)
    if profile is not None:
        payloads.append(ArtifactPayload(Role.PROFILE, profile, PROFILE_MEDIA_TYPE))
    commit, dirty = git_state()
    draft = VersionDraft(
        name=name,
        framework=adapter.framework,
        framework_version=adapter.framework_version(),
        task=resolved_task,
        signature=signature,
        metrics=clean_metrics,
        params=clean_params,
        tags={str(k): str(v) for k, v in (tags or {}).items()},
        lineage=Lineage(
            data_sha256=digest_data(training_data) if training_data is not None else None,
            git_commit=commit,
            git_dirty=dirty,
            source_uri=source_uri,
            extra=dict(lineage_extra or {}),
        ),
        environment=runtime_environment(*_FRAMEWORK_PACKAGES.get(adapter.framework, ())),
        verification=frozen.verification if frozen else None,
        created_by="",
    )
    with _registry(registry, settings) as reg:
        return reg.create_version(draft.model_copy(update={"created_by": reg.user}), payloads)


def _freeze(
    model: Any, adapter: Adapter, sample: Any, task: Task, settings: Settings
) -> FrozenGraph:
    return freeze_model(
        model,
        adapter,
        sample=sample,
        task=task,
        settings=settings.freeze,
        latency_runs=settings.quantize.latency_runs,
    )


def _signature(frozen: FrozenGraph | None, model: Any, adapter: Adapter, sample: Any) -> Signature:
    if frozen is not None:
        return frozen.signature
    if adapter.framework == "onnx":
        return graph_signature(model)
    if sample is None:
        raise ModelfleetError(
            "a sample input is needed to record the model's signature",
            hint="pass sample_input=X (or --sample FILE)",
        )
    return adapter.input_signature(sample)


def freeze_version(
    ref: str,
    *,
    atol: float | None = None,
    min_agreement: float | None = None,
    settings: Settings | None = None,
    registry: Registry | None = None,
) -> ModelVersion:
    """Freeze a version registered without an ONNX graph, verifying it on its stored sample."""
    settings = settings or load_settings()
    tolerance = settings.freeze.model_copy(
        update={
            k: v for k, v in {"atol": atol, "min_agreement": min_agreement}.items() if v is not None
        }
    )
    with _registry(registry, settings) as reg:
        version = reg.get(ref)
        if version.artifact(Role.ONNX) is not None:
            raise RegistryError(
                f"{version.ref} is already frozen",
                hint=f"run 'modelfleet artifacts {version.ref}' to see its graph",
            )
        record = version.artifact(Role.SOURCE)
        if record is None:
            raise RegistryError(f"{version.ref} has no source artifact to freeze")
        adapter = adapter_for_framework(version.framework)
        model = adapter.deserialize(
            SourceBlob(reg.read_artifact(version, Role.SOURCE), record.media_type)
        )
        sample = (
            decode_sample(reg.read_artifact(version, Role.SAMPLE))
            if version.artifact(Role.SAMPLE)
            else None
        )
        frozen = freeze_model(
            model,
            adapter,
            sample=sample,
            task=version.task,
            settings=tolerance,
            latency_runs=settings.quantize.latency_runs,
        )
        return reg.attach_frozen(
            version,
            ArtifactPayload(Role.ONNX, frozen.graph, ONNX_MEDIA_TYPE),
            frozen.verification,
            frozen.signature,
        )


def quantize(
    ref: str,
    *,
    to: str | Variant,
    method: str | Method = Method.DYNAMIC,
    eval_data: LabeledData | None = None,
    max_drop: float | None = None,
    settings: Settings | None = None,
    registry: Registry | None = None,
) -> ModelVersion:
    """Create an fp16 or int8 child version if the metric drops by at most ``max_drop``."""
    settings = settings or load_settings()
    # Checked before the registry is opened: a bad choice changes nothing.
    variant = _choose(Variant, to, "variant", QuantizeError, (Variant.FP16, Variant.INT8))
    how = _choose(Method, method, "quantization method", QuantizeError)
    allowed = settings.quantize.max_drop if max_drop is None else max_drop
    with _registry(registry, settings) as reg:
        parent = reg.get(ref)
        if parent.variant is not Variant.FP32:
            raise QuantizeError(
                f"{parent.ref} is already {parent.variant.value}",
                hint=f"quantize its fp32 parent {parent.name}:{parent.lineage.parent_version}",
            )
        graph = reg.read_artifact(parent, Role.ONNX)
        features, labels = _evaluation_data(reg, parent, eval_data)
        result = quantize_graph(
            graph,
            variant=variant,
            method=how,
            task=parent.task,
            features=features,
            labels=labels,
            latency_runs=settings.quantize.latency_runs,
        )
        if result.exceeds(allowed):
            raise AccuracyDropError(
                result.metric,
                result.before,
                result.after,
                allowed,
                variant.value,
                figures=result.figures,
            )
        metrics = {**parent.metrics, result.metric: result.after}
        draft = VersionDraft(
            name=parent.name,
            framework=parent.framework,
            framework_version=parent.framework_version,
            task=parent.task,
            variant=variant,
            signature=graph_signature(onnx_module().load_from_string(result.graph)),
            metrics=metrics,
            params=parent.params,
            tags={**parent.tags, "variant": variant.value},
            lineage=parent.lineage.model_copy(update={"parent_version": parent.version}),
            environment=runtime_environment(),
            verification={"method": "quantize", **result.figures},
            created_by=reg.user,
        )
        payloads = [ArtifactPayload(Role.ONNX, result.graph, ONNX_MEDIA_TYPE)]
        if parent.artifact(Role.SAMPLE):
            sample = reg.read_artifact(parent, Role.SAMPLE)
            payloads.append(ArtifactPayload(Role.SAMPLE, sample, SAMPLE_MEDIA_TYPE))
        return reg.create_version(draft, payloads)


def _evaluation_data(
    reg: Registry, version: ModelVersion, eval_data: LabeledData | None
) -> tuple[dict[str, np.ndarray[Any, Any]], np.ndarray[Any, Any] | None]:
    if eval_data is not None:
        features = prepare_inputs(version.signature, eval_data.features)
        labels = eval_data.labels
        rows = next(iter(features.values())).shape[0]
        if labels is not None and len(labels) != rows:
            raise ModelfleetError(
                f"evaluation data has {rows} rows but {len(labels)} labels",
                hint="give one label per row",
            )
        return features, labels
    if version.artifact(Role.SAMPLE) is None:
        raise QuantizeError(
            f"{version.ref} has no stored sample to evaluate the quantized graph on",
            hint="pass --eval FILE with features (and labels)",
        )
    sample = decode_sample(reg.read_artifact(version, Role.SAMPLE))
    return prepare_inputs(version.signature, sample), None


def promote(
    ref: str,
    *,
    to: str | Stage,
    require: Sequence[str] = (),
    reason: str | None = None,
    settings: Settings | None = None,
    registry: Registry | None = None,
) -> StageEvent:
    """Move a stage pointer to ``ref`` when every requirement (``accuracy>=0.9``) holds."""
    stage = to if isinstance(to, Stage) else parse_stage(to)
    with _registry(registry, settings) as reg:
        return reg.promote(ref, stage, require=require, reason=reason)


def get(
    ref: str, *, settings: Settings | None = None, registry: Registry | None = None
) -> ModelVersion:
    """Look a version up by reference."""
    with _registry(registry, settings) as reg:
        return reg.get(ref)
