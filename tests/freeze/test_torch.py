"""Freezing PyTorch modules: torch.export program as source, ONNX with a dynamic batch axis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import modelfleet as mf
from modelfleet.registry import Registry

pytestmark = pytest.mark.torch


class TwoHeads(torch.nn.Module):
    """A small classifier returning logits and an embedding (two outputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU())
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.body(x)
        return self.head(hidden), hidden


def _sample(rows: int = 32) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(rows, 6)).astype(np.float32)


def test_module_freezes_with_dynamic_batch_and_verification(registry: Registry) -> None:
    torch.manual_seed(0)
    net = TwoHeads()
    version = mf.register(
        net, name="net", sample_input=_sample(), task="classification", registry=registry
    )
    record = version.verification or {}
    assert record["max_abs_diff"] < 1e-4
    assert record["label_agreement"] == 1.0
    assert version.signature.output_names == ["output_0", "output_1"]
    assert version.signature.inputs[0].shape == (None, 6)
    assert version.artifact("source").media_type == "application/vnd.pytorch.exported-program"
    session = ort.InferenceSession(registry.read_artifact(version, "onnx"))
    x = _sample(5)
    logits, hidden = session.run(None, {"input": x})
    with torch.no_grad():
        want_logits, want_hidden = net(torch.from_numpy(x))
    np.testing.assert_allclose(logits, want_logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(hidden, want_hidden.numpy(), atol=1e-5)


def test_single_row_sample_still_gets_a_batch_axis(registry: Registry) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(6, 2))
    version = mf.register(net, name="tiny", sample_input=_sample(1), registry=registry)
    session = ort.InferenceSession(registry.read_artifact(version, "onnx"))
    assert session.run(None, {"input": _sample(9)})[0].shape == (9, 2)


def test_stored_program_freezes_again_later(registry: Registry) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    mf.register(net, name="later", sample_input=_sample(), freeze=False, registry=registry)
    frozen = mf.freeze_version("later:1", registry=registry)
    assert (frozen.verification or {})["max_abs_diff"] < 1e-4


class DataDependent(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # Python control flow on data: torch.export cannot trace it
            return x * 2
        return x


def test_untraceable_module_is_explained(registry: Registry) -> None:
    with pytest.raises(mf.UnsupportedModelError, match=r"torch.export failed"):
        mf.register(DataDependent(), name="dd", sample_input=_sample(), registry=registry)
    assert registry.models() == []


def test_torchscript_file_registers(tmp_path: Path, registry: Registry) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(6, 2))
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    version = mf.register_file(path, name="scripted", sample_input=_sample(), registry=registry)
    assert version.artifact("source").media_type == "application/vnd.pytorch.torchscript"
    assert (version.verification or {})["max_abs_diff"] < 1e-4


def test_pickled_checkpoint_needs_trust(tmp_path: Path, registry: Registry) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(6, 2))
    path = tmp_path / "checkpoint.pt"
    torch.save(net, path)
    with pytest.raises(mf.UntrustedArtifactError, match=r"pickled checkpoint.*--trust"):
        mf.register_file(path, name="ckpt", sample_input=_sample(), registry=registry)
    assert registry.models() == []
    version = mf.register_file(
        path, name="ckpt", sample_input=_sample(), trust=True, registry=registry
    )
    # Trusted pickles are re-stored in the safe format.
    assert version.artifact("source").media_type == "application/vnd.pytorch.exported-program"


def test_state_dict_file_is_not_a_model(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(6, 2).state_dict(), path)
    with pytest.raises(mf.ModelfleetError, match=r"not a torch.nn.Module"):
        mf.register_file(path, name="w", sample_input=_sample(), trust=True, registry=registry)
