"""A graph fixed to one batch size is timed at that size only: what is shown and estimated
from its latency is what was timed, never a 0.000 for a size that never ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelfleet as mf
from modelfleet.cli import main
from modelfleet.config import Settings
from modelfleet.registry import Registry
from modelfleet.serving.resolver import Resolver
from modelfleet.serving.settings import ModelConfig


def _matmul_graph(batch: int | str) -> Any:
    """Y = X @ W with X float32[batch, 3]: float weights, so fp16 has something to halve."""
    from onnx import TensorProto, helper, numpy_helper

    weight = np.arange(6, dtype=np.float32).reshape(3, 2) / 7
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "matmul",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [batch, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [batch, 2])],
        initializer=[numpy_helper.from_array(weight, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture
def home(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELFLEET_HOME", str(settings.home))
    monkeypatch.setenv("COLUMNS", "400")
    return Path(settings.home)


def _register(tmp_path: Path, batch: int | str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(_matmul_graph(batch).SerializeToString())
    assert main(["register", str(path), "--name", "mm"]) == 0
    capsys.readouterr()


def _versions_row(capsys: pytest.CaptureFixture[str], version: str = "1") -> str:
    assert main(["versions", "mm"]) == 0
    out = capsys.readouterr().out
    return next(line for line in out.splitlines() if line.startswith(f"│ {version} "))


def test_versions_shows_the_batch_size_a_fixed_graph_was_timed_at(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _register(tmp_path, 4, capsys)
    row = _versions_row(capsys)
    assert "batch 4: " in row
    assert "0.000 / 0.000" not in row


def test_a_graph_fixed_to_one_row_shows_no_time_for_64(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _register(tmp_path, 1, capsys)
    row = _versions_row(capsys)
    assert " / - " in row and "0.000" not in row


def test_an_open_batch_axis_still_shows_batch_1_and_64(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _register(tmp_path, "batch", capsys)
    row = _versions_row(capsys)
    assert "batch 4" not in row and " / " in row


def test_the_quantize_table_has_a_row_for_the_size_that_was_timed(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _register(tmp_path, 4, capsys)
    eval_file = tmp_path / "eval.npz"
    np.savez(eval_file, X=np.random.default_rng(0).random((4, 3), dtype=np.float32))
    assert main(["quantize", "mm:1", "--to", "fp16", "--eval", str(eval_file)]) == 0
    out = capsys.readouterr().out
    assert "ms batch 4" in out
    assert "ms batch 1 " not in out and "ms batch 64" not in out
    assert "batch 4: " in _versions_row(capsys, "2")


@pytest.mark.parametrize(("batch", "key", "rows"), [(4, "batch_4_ms", 4), ("n", "batch_64_ms", 64)])
def test_the_server_estimates_a_rows_cost_from_the_batch_that_was_timed(
    settings: Settings, registry: Registry, batch: int | str, key: str, rows: int
) -> None:
    version = mf.register(_matmul_graph(batch), name="mm", registry=registry)
    latency = (version.verification or {})["latency"]
    config = ModelConfig(ref="mm:1")
    resolver = Resolver(settings)
    try:
        source = resolver.resolve("mm", config, resolver.locate(config))
    finally:
        resolver.close()
    assert source.ms_per_row == pytest.approx(latency[key] / rows)
