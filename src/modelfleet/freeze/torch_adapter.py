"""PyTorch: stored as a ``torch.export`` program (.pt2), frozen with ``torch.onnx.export``.

TorchScript files (``.pt`` from ``torch.jit.save``) are accepted too; they are exported with
the TorchScript-based exporter because ``torch.export`` cannot trace a ScriptModule.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any

import numpy as np

from modelfleet.config import FreezeSettings
from modelfleet.errors import FreezeError, MissingDependencyError, UnsupportedModelError
from modelfleet.freeze.adapter import SourceBlob
from modelfleet.registry import Task, package_version
from modelfleet.signature import Signature, infer_signature, to_named_arrays

EXPORTED_MEDIA_TYPE = "application/vnd.pytorch.exported-program"
TORCHSCRIPT_MEDIA_TYPE = "application/vnd.pytorch.torchscript"

logger = logging.getLogger(__name__)


def torch_module() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("torch", "torch", purpose="handle PyTorch models") from exc
    return torch


def _tensors(sample: Any) -> tuple[Any, ...]:
    torch = torch_module()
    return tuple(
        torch.from_numpy(np.ascontiguousarray(a)) for a in to_named_arrays(sample).values()
    )


def _at_least_two_rows(sample: Any) -> dict[str, np.ndarray[Any, Any]]:
    # torch.export specialises a dimension of size 0 or 1, so a dynamic batch axis needs
    # an example with two or more rows.
    arrays = to_named_arrays(sample)
    return {k: np.concatenate([v, v]) if v.shape[0] < 2 else v for k, v in arrays.items()}


class TorchAdapter:
    """Adapter for ``torch.nn.Module``, ``ExportedProgram`` and TorchScript modules."""

    framework = "torch"

    def accepts(self, model: object) -> bool:
        """True for modules and exported programs."""
        torch = torch_module()
        return isinstance(model, torch.nn.Module | torch.export.ExportedProgram)

    def framework_version(self) -> str:
        """Installed torch version."""
        return package_version("torch") or "unknown"

    def task(self, model: Any) -> Task:
        """Torch modules do not say what they predict; callers pass ``task=``."""
        return Task.OTHER

    def export_program(self, model: Any, sample: Any) -> Any:
        """``torch.export`` the module with a dynamic batch axis on every input."""
        torch = torch_module()
        if isinstance(model, torch.export.ExportedProgram):
            return model
        if isinstance(model, torch.jit.ScriptModule):
            return model
        arrays = _at_least_two_rows(sample)
        batch = torch.export.Dim("batch")
        shapes = tuple({0: batch} for _ in arrays)
        args = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays.values())
        model.eval()
        try:
            return torch.export.export(model, args, dynamic_shapes=shapes)
        except Exception as exc:  # torch raises many unrelated types from tracing
            raise UnsupportedModelError(
                f"{type(model).__name__} (torch.export failed: {str(exc).splitlines()[0][:200]})",
                hint="make the forward pass traceable (no data-dependent Python control flow)",
            ) from exc

    def serialize(self, model: Any, sample: Any) -> SourceBlob:
        """An ExportedProgram (.pt2: a zip of graph and weights) or a TorchScript archive."""
        torch = torch_module()
        program = self.export_program(model, sample)
        buffer = io.BytesIO()
        if isinstance(program, torch.jit.ScriptModule):
            torch.jit.save(program, buffer)
            return SourceBlob(buffer.getvalue(), TORCHSCRIPT_MEDIA_TYPE)
        with warnings.catch_warnings():
            # torch.export.save trips over a pytree API torch itself deprecated.
            warnings.filterwarnings("ignore", "`isinstance.treespec, LeafSpec.", FutureWarning)
            torch.export.save(program, buffer)
        return SourceBlob(buffer.getvalue(), EXPORTED_MEDIA_TYPE)

    def deserialize(self, blob: SourceBlob) -> Any:
        """Load a .pt2 program or a TorchScript archive."""
        torch = torch_module()
        if blob.media_type == TORCHSCRIPT_MEDIA_TYPE:
            return torch.jit.load(io.BytesIO(blob.data), map_location="cpu")
        return torch.export.load(io.BytesIO(blob.data))

    def input_signature(self, sample: Any) -> Signature:
        """Inputs keep the sample's dtypes, which must match the module's parameters."""
        return infer_signature(sample)

    def normalize(self, model: Any, sample: Any) -> Any:
        """The exported program (or ScriptModule) that is both stored and frozen."""
        return self.export_program(model, sample)

    def to_onnx(self, model: Any, signature: Signature, settings: FreezeSettings) -> Any:
        """Export with a dynamic batch axis named ``batch`` on inputs and outputs."""
        torch = torch_module()
        names = signature.input_names
        try:
            if isinstance(model, torch.jit.ScriptModule):
                return _export_torchscript(model, signature, settings)
            if not isinstance(model, torch.export.ExportedProgram):
                raise UnsupportedModelError(
                    type(model).__name__, hint="normalize() the module before freezing it"
                )
            count = len(model.graph_signature.user_outputs)
            outputs = ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
            with _quiet():
                onnx_program = torch.onnx.export(
                    model,
                    input_names=names,
                    output_names=outputs,
                    opset_version=max(settings.opset, 18),
                    dynamo=True,
                    verbose=False,
                )
            return onnx_program.model_proto
        except UnsupportedModelError:
            raise
        except Exception as exc:  # exporter failures come in many types
            raise FreezeError(
                f"torch.onnx.export failed: {str(exc).splitlines()[0][:300]}",
                hint="check the model exports with torch.onnx.export(..., dynamo=True)",
            ) from exc

    def predict(self, model: Any, sample: Any) -> list[np.ndarray[Any, Any]]:
        """Run the module (or program) in inference mode; tuple outputs become a list."""
        torch = torch_module()
        module = model.module() if isinstance(model, torch.export.ExportedProgram) else model
        with torch.inference_mode():
            result = module(*_tensors(sample))
        results = result if isinstance(result, tuple | list) else (result,)
        return [r.detach().cpu().numpy() for r in results]


@contextlib.contextmanager
def _quiet() -> Any:
    # The exporter prints progress lines to stdout and logs warnings about optional packages
    # (torchvision); keep the CLI's output ours.
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        exporter_log.setLevel(level)


def _torch_dtype(name: str) -> Any:
    torch = torch_module()
    table = {
        "float32": torch.float32,
        "float64": torch.float64,
        "float16": torch.float16,
        "int64": torch.int64,
        "int32": torch.int32,
        "bool": torch.bool,
        "uint8": torch.uint8,
    }
    if name not in table:
        raise UnsupportedModelError(f"torch module with {name} input")
    return table[name]


def _export_torchscript(model: Any, signature: Signature, settings: FreezeSettings) -> Any:
    torch = torch_module()
    names = signature.input_names
    example = tuple(
        torch.zeros((2, *(d or 1 for d in spec.shape[1:])), dtype=_torch_dtype(spec.dtype))
        for spec in signature.inputs
    )
    buffer = io.BytesIO()
    with _quiet(), warnings.catch_warnings():
        # ScriptModules can only go through the TorchScript exporter, which torch deprecates.
        warnings.filterwarnings(
            "ignore", "You are using the legacy TorchScript", DeprecationWarning
        )
        warnings.filterwarnings("ignore", "no signature found for", UserWarning)
        torch.onnx.export(
            model,
            example,
            buffer,
            input_names=names,
            dynamic_axes={name: {0: "batch"} for name in names},
            opset_version=settings.opset,
            dynamo=False,
        )
    return _onnx_load(buffer.getvalue())


def _onnx_load(data: bytes) -> Any:
    import onnx

    return onnx.load_from_string(data)
