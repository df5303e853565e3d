"""Model files given on the command line: recognised by extension, loaded only when safe.

``.onnx``, ``.skops``, ``.pt2`` (torch.export) and TorchScript ``.pt`` load without running
arbitrary code. Pickles (``.pkl``, ``.pickle``, ``.joblib``, or a ``.pt`` that is a pickled
checkpoint) execute code when loaded, so they are refused unless the caller trusts them.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelfleet.errors import FreezeError, ModelfleetError, UntrustedArtifactError
from modelfleet.freeze.adapter import Adapter, SourceBlob, find_adapter

PICKLE_SUFFIXES = {".pkl", ".pickle", ".joblib"}
SUPPORTED = ".onnx, .skops, .pt2, .pt (TorchScript), .pkl/.joblib (with --trust)"


@dataclass(frozen=True)
class LoadedModel:
    """A model read from a file, its adapter, and the bytes to keep as its source."""

    model: Any
    adapter: Adapter
    source: SourceBlob | None


def load_model_file(path: Path, *, trust: bool = False) -> LoadedModel:
    """Load ``path`` by its extension; unsafe formats need ``trust``."""
    if not path.exists():
        raise ModelfleetError(f"model file {path} does not exist", hint="check the path")
    if not path.is_file():
        raise ModelfleetError(f"{path} is not a file", hint=f"give a model file ({SUPPORTED})")
    suffix = path.suffix.lower()
    data = path.read_bytes()
    if suffix == ".onnx":
        return _onnx(data, path)
    if suffix == ".skops":
        return _skops(data, path, trust)
    if suffix == ".pt2":
        return _exported(data, path)
    if suffix in (".pt", ".pth"):
        return _torch_file(data, path, trust)
    if suffix in PICKLE_SUFFIXES:
        if not trust:
            raise UntrustedArtifactError(
                str(path), "pickle and joblib files run arbitrary code when loaded"
            )
        return _unpickle(path)
    raise ModelfleetError(f"unsupported model file {path.name}", hint=f"supported: {SUPPORTED}")


def _onnx(data: bytes, path: Path) -> LoadedModel:
    from modelfleet.freeze.onnx_adapter import ONNX_MEDIA_TYPE, OnnxAdapter, load_graph

    graph = load_graph(data, origin=str(path))
    return LoadedModel(graph, OnnxAdapter(), SourceBlob(data, ONNX_MEDIA_TYPE))


def _skops(data: bytes, path: Path, trust: bool) -> LoadedModel:
    from modelfleet.freeze.sklearn_adapter import SKOPS_MEDIA_TYPE, SklearnAdapter, check_skops_file

    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ModelfleetError(
            f"{path} is not a valid skops file", hint="save it with skops.io.dump"
        )
    import skops.io as sio

    try:
        # The trust check reads the archive's schema too, so a damaged archive fails here.
        untrusted = check_skops_file(data, str(path), trust=trust)
        model = sio.loads(data, trusted=untrusted)
    except ModelfleetError:
        raise
    except Exception as exc:  # skops raises several types on damaged archives
        raise FreezeError(
            f"cannot load {path}: it is damaged or not a skops file ({_reason(exc)})",
            hint="save it again with skops",
        ) from exc
    return LoadedModel(model, SklearnAdapter(), SourceBlob(data, SKOPS_MEDIA_TYPE))


def _exported(data: bytes, path: Path) -> LoadedModel:
    from modelfleet.freeze.torch_adapter import EXPORTED_MEDIA_TYPE, TorchAdapter

    blob = SourceBlob(data, EXPORTED_MEDIA_TYPE)
    try:
        program = TorchAdapter().deserialize(blob)
    except ModelfleetError:
        raise
    except Exception as exc:  # torch raises many types for damaged archives
        raise ModelfleetError(
            f"cannot load {path} as a torch.export program: {str(exc).splitlines()[0][:200]}",
            hint="save it with torch.export.save",
        ) from exc
    return LoadedModel(program, TorchAdapter(), blob)


def _torch_file(data: bytes, path: Path, trust: bool) -> LoadedModel:
    from modelfleet.freeze.torch_adapter import TORCHSCRIPT_MEDIA_TYPE, TorchAdapter, torch_module

    torch = torch_module()
    try:
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
        return LoadedModel(module, TorchAdapter(), SourceBlob(data, TORCHSCRIPT_MEDIA_TYPE))
    except Exception as exc:  # torch raises RuntimeError and others for non-TorchScript bytes
        jit_error = exc
    kind = _torch_archive_kind(data)
    if kind == "damaged":
        raise FreezeError(
            f"cannot load {path}: it is a damaged or truncated torch archive",
            hint="save it again (torch.jit.save, torch.export.save) and copy the whole file",
        ) from jit_error
    if kind == "torchscript":
        raise FreezeError(
            f"cannot load {path} as TorchScript: {_reason(jit_error)}",
            hint="save it again with torch.jit.save, or as a torch.export program (.pt2)",
        ) from jit_error
    if not trust:
        raise UntrustedArtifactError(
            str(path),
            "it is not TorchScript, so it is a pickled checkpoint that runs code when loaded",
        ) from jit_error
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as exc:  # unpickling raises whatever the damaged stream leads to
        raise FreezeError(
            f"cannot load {path}: it is damaged or not a torch file ({_reason(exc)})",
            hint=f"save it again with torch.save or torch.jit.save (supported: {SUPPORTED})",
        ) from exc
    if not isinstance(obj, torch.nn.Module):
        raise ModelfleetError(
            f"{path} holds a {type(obj).__name__}, not a torch.nn.Module",
            hint="save the whole module (or a torch.export program) instead of a state dict",
        )
    return LoadedModel(obj, TorchAdapter(), None)


def _torch_archive_kind(data: bytes) -> str:
    """What a ``.pt`` that TorchScript could not load is: damaged, torchscript or checkpoint.

    TorchScript archives and current ``torch.save`` checkpoints are both zip files; only
    TorchScript holds ``code/`` and ``constants.pkl``. A zip cut short has no central
    directory, so it is damaged whatever it was. Anything else may be a legacy pickle.
    """
    if not data.startswith(b"PK\x03\x04"):
        return "checkpoint"
    if not zipfile.is_zipfile(io.BytesIO(data)):
        return "damaged"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
    if any("/code/" in name or name.endswith("constants.pkl") for name in names):
        return "torchscript"
    return "checkpoint"


def _read_pickle(path: Path) -> Any:
    try:
        import joblib
    except ImportError:
        with path.open("rb") as f:
            return pickle.load(f)  # noqa: S301 - the caller passed trust explicitly
    return joblib.load(path)


def _unpickle(path: Path) -> LoadedModel:
    try:
        model = _read_pickle(path)
    except Exception as exc:  # unpickling raises whatever the damaged stream leads to
        raise FreezeError(
            f"cannot load {path}: it is damaged or not a pickle/joblib file ({_reason(exc)})",
            hint=(
                "save it again with joblib.dump or pickle.dump, in an environment with the "
                "packages it was trained with installed"
            ),
        ) from exc
    return LoadedModel(model, find_adapter(model), None)


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
