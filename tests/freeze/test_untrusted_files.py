"""Unsafe and damaged model files: pickles never run without trust, broken files explain."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import pytest
import skops.io as sio

import modelfleet as mf
from modelfleet.config import Settings
from modelfleet.freeze import load_model_file
from modelfleet.registry import Registry
from tests.models import iris, logistic_pipeline, sum_graph


class _Trap:
    """Unpickling this creates ``marker``: proof that the pickle's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def _trap_pickle(tmp_path: Path, name: str) -> tuple[Path, Path]:
    marker = tmp_path / "code-ran"
    path = tmp_path / name
    path.write_bytes(pickle.dumps(_Trap(marker)))
    return path, marker


@pytest.mark.parametrize("name", ["model.pkl", "model.pickle", "model.joblib", "MODEL.PKL"])
def test_pickles_are_refused_before_any_byte_is_unpickled(tmp_path: Path, name: str) -> None:
    path, marker = _trap_pickle(tmp_path, name)
    with pytest.raises(mf.UntrustedArtifactError) as info:
        load_model_file(path)
    assert not marker.exists()
    assert info.value.path == str(path)
    message = str(info.value)
    assert f"refusing to load {path}" in message
    assert "run arbitrary code" in message
    assert "pass --trust (trust=True) only if you trust whoever made this file" in message


def test_the_trap_does_run_once_trusted(tmp_path: Path) -> None:
    # The counterpart of the refusal above: the same file, trusted, executes its code; so the
    # marker's absence there is the trust gate's doing. Path.touch returns None, not a model.
    path, marker = _trap_pickle(tmp_path, "model.pkl")
    with pytest.raises(mf.UnsupportedModelError, match=r"builtins\.NoneType"):
        load_model_file(path, trust=True)
    assert marker.exists()


def test_trusted_pickle_of_a_model_finds_its_adapter_and_keeps_no_pickle(tmp_path: Path) -> None:
    model, X, _ = logistic_pipeline()
    path = tmp_path / "model.pickle"
    path.write_bytes(pickle.dumps(model))
    loaded = load_model_file(path, trust=True)
    assert loaded.adapter.framework == "sklearn"
    assert loaded.source is None  # the pickle bytes are never kept as the source
    assert (loaded.model.predict(X) == model.predict(X)).all()


def test_every_truncation_of_an_onnx_file_is_a_freeze_error(tmp_path: Path) -> None:
    data = sum_graph(4).SerializeToString()
    path = tmp_path / "cut.onnx"
    for size in range(0, len(data), 7):
        path.write_bytes(data[:size])
        with pytest.raises(mf.FreezeError) as info:
            load_model_file(path)
        assert str(path) in str(info.value), size
        assert info.value.hint is not None


def test_empty_onnx_file_fails_the_checker(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(mf.FreezeError, match=r"empty\.onnx fails the ONNX checker.*export again"):
        load_model_file(path)


def _skops_bytes() -> bytes:
    model, _, _ = logistic_pipeline()
    return sio.dumps(model)


def test_truncated_skops_file_is_not_a_skops_file(tmp_path: Path) -> None:
    data = _skops_bytes()
    path = tmp_path / "cut.skops"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(mf.ModelfleetError, match=r"cut\.skops is not a valid skops file") as info:
        load_model_file(path)
    assert info.value.hint == "save it with skops.io.dump"


def test_skops_file_with_a_damaged_array_says_so(tmp_path: Path) -> None:
    original = zipfile.ZipFile(io.BytesIO(_skops_bytes()))
    damaged = io.BytesIO()
    with zipfile.ZipFile(damaged, "w") as archive:
        for member in original.namelist():
            content = original.read(member)
            archive.writestr(member, content[:10] if member.endswith(".npy") else content)
    path = tmp_path / "damaged.skops"
    path.write_bytes(damaged.getvalue())
    with pytest.raises(mf.ModelfleetError, match=r"cannot load .*damaged\.skops") as info:
        load_model_file(path)
    assert info.value.hint == "save it again with skops"


def test_damaged_skops_file_registers_nothing(
    tmp_path: Path, registry: Registry, settings: Settings
) -> None:
    data = _skops_bytes()
    path = tmp_path / "cut.skops"
    path.write_bytes(data[:-100])
    X, _ = iris()
    with pytest.raises(mf.ModelfleetError, match="not a valid skops file"):
        mf.register_file(path, name="cut", sample_input=X, registry=registry)
    assert registry.models() == []
    artifacts = Path(settings.artifacts)
    assert not artifacts.exists() or not [p for p in artifacts.rglob("*") if p.is_file()]


@pytest.mark.torch
@pytest.mark.parametrize("how", ["torch-save", "raw-pickle"])
def test_pickled_torch_checkpoints_never_run_without_trust(tmp_path: Path, how: str) -> None:
    import torch

    marker = tmp_path / "code-ran"
    path = tmp_path / "checkpoint.pt"
    if how == "torch-save":
        torch.save({"weights": _Trap(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(_Trap(marker)))
    with pytest.raises(mf.UntrustedArtifactError, match=r"not TorchScript.*--trust"):
        load_model_file(path)
    assert not marker.exists()


@pytest.mark.torch
def test_pt2_file_holding_a_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    import torch

    marker = tmp_path / "code-ran"
    path = tmp_path / "model.pt2"
    torch.save({"weights": _Trap(marker)}, path)
    with pytest.raises(mf.ModelfleetError, match=r"as a torch\.export program") as info:
        load_model_file(path)
    assert info.value.hint == "save it with torch.export.save"
    assert not marker.exists()


@pytest.mark.torch
def test_truncated_pt2_program_is_explained(tmp_path: Path) -> None:
    import torch

    program = torch.export.export(torch.nn.Sequential(torch.nn.Linear(3, 2)), (torch.zeros(2, 3),))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    path = tmp_path / "cut.pt2"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(mf.ModelfleetError, match=r"cannot load .*cut\.pt2 as a torch\.export"):
        load_model_file(path)
