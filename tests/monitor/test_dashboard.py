"""The Grafana dashboard: a sound dashboard whose every query Prometheus accepts and whose
metrics are the ones the server exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from modelfleet.cli import main
from tests.prometheus import Prometheus

# The metric families the server exports (the monitoring contract), with their label names.
HISTOGRAMS = {
    "modelfleet_request_duration_seconds": {"model", "version", "endpoint"},
    "modelfleet_queue_wait_seconds": {"model", "version"},
    "modelfleet_inference_duration_seconds": {"model", "version"},
    "modelfleet_batch_rows": {"model", "version"},
    "modelfleet_batch_requests": {"model", "version"},
    "modelfleet_model_load_duration_seconds": {"model", "version"},
}
SERIES = {
    "modelfleet_requests_total": {"model", "version", "endpoint", "status"},
    "modelfleet_queue_depth": {"model", "version"},
    "modelfleet_inflight_requests": {"model", "version"},
    "modelfleet_cache_lookups_total": {"model", "version", "result"},
    "modelfleet_cache_enabled": {"model", "version"},
    "modelfleet_model_load_failures_total": {"model"},
    "modelfleet_model_info": {"model", "version", "variant", "sha256"},
    "modelfleet_predictions_total": {"model", "version", "class"},
    "modelfleet_drift_score": {"model", "version", "feature", "method"},
    "modelfleet_live_accuracy": {"model", "version"},
    "modelfleet_feedback_total": {"model", "version", "result"},
}
# Fleet-wide, not per model (so not on the per-model dashboard): 0 while the shared state
# backend is away.
FLEET_SERIES = {"modelfleet_state_backend_up": {"backend"}}
EXPORTED = {
    **SERIES,
    **FLEET_SERIES,
    **{
        f"{name}_{part}": labels for name, labels in HISTOGRAMS.items() for part in ("sum", "count")
    },
    **{f"{name}_bucket": {*labels, "le"} for name, labels in HISTOGRAMS.items()},
}
# What a person looks for on the dashboard, each a word of some panel's title.
TOPICS = [
    "requests per second",
    "error ratio",
    "request latency",
    "queue wait",
    "inference time",
    "batch size",
    "queue depth",
    "in-flight",
    "cache hit ratio",
    "load time",
    "failed loads",
    "predictions per class",
    "drift (psi)",
    "drift (ks)",
    "live accuracy",
]
# Grafana's variables, replaced the way Grafana does before a query reaches Prometheus: the
# model is "All" (the variable's all value) or a multi-value selection.
SELECTIONS = [".*", "(churn|fraud)"]
METRIC = re.compile(r"\b(modelfleet_[a-z_]+)\b")
SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\{([^}]*)\}")
GROUPING = re.compile(r"\bby \(([^)]*)\)")
LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``modelfleet monitor dashboard --model churn --out …`` parsed back."""
    out = tmp_path_factory.mktemp("dashboard") / "board.json"
    assert main(["monitor", "dashboard", "--model", "churn", "--out", str(out)]) == 0
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def queries(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(board) for t in p["targets"]]


def substitute(expr: str, model: str) -> str:
    return expr.replace("$__rate_interval", "1m").replace("$model", model)


def test_dashboard_is_well_formed(board: dict[str, Any]) -> None:
    assert board["title"] == "modelfleet: churn"
    assert board["uid"] == "modelfleet-churn"
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) and all(i > 0 for i in ids)
    for panel in panels(board):
        assert panel["type"] in {"timeseries", "stat", "table"}
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert all(ref_ids) and len(ref_ids) == len(set(ref_ids))
        assert all(t["datasource"] == panel["datasource"] for t in panel["targets"])


def test_panels_tile_the_grid_without_overlapping(board: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_template_variables_choose_datasource_and_model(board: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert set(variables) == {"datasource", "model"}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    model = variables["model"]
    assert model["type"] == "query"
    assert model["query"] == "label_values(modelfleet_model_info, model)"
    assert model["multi"] is True and model["includeAll"] is True and model["allValue"] == ".*"
    assert model["current"]["value"] == "churn"
    assert all('model=~"$model"' in expr for expr in queries(board))


def test_every_topic_has_a_panel(board: dict[str, Any]) -> None:
    titles = " | ".join(p["title"].lower() for p in panels(board))
    missing = [topic for topic in TOPICS if topic not in titles]
    assert not missing, f"no panel for {missing}; titles: {titles}"


def test_queries_use_only_exported_metrics_and_labels(board: dict[str, Any]) -> None:
    used: set[str] = set()
    for expr in queries(board):
        for name, matchers in SELECTOR.findall(expr):
            assert name in EXPORTED, f"{name} is not exported: {expr}"
            labels = {m.split("=")[0].rstrip("!~") for m in matchers.split(",")}
            assert labels <= EXPORTED[name], f"{name} has no label {labels - EXPORTED[name]}"
        used |= set(METRIC.findall(expr))
    assert used <= set(EXPORTED)
    # every exported family shows up somewhere
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    assert families == set(SERIES) | set(HISTOGRAMS)


def test_groupings_and_legends_name_real_labels(board: dict[str, Any]) -> None:
    """A legend or a ``by`` on a label the metric lacks shows blanks, not an error."""
    for panel in panels(board):
        for target in panel["targets"]:
            expr = target["expr"]
            known = set().union(*(EXPORTED[name] for name in METRIC.findall(expr)))
            grouped = {g.strip() for group in GROUPING.findall(expr) for g in group.split(",")}
            assert grouped <= known, f"{panel['title']}: no label {grouped - known}"
            legend = set(LEGEND.findall(target.get("legendFormat", "")))
            assert legend <= known, f"{panel['title']}: legend uses {legend - known}"


@pytest.mark.parametrize("model", SELECTIONS)
def test_prometheus_accepts_every_query(
    board: dict[str, Any], idle_prometheus: Prometheus, model: str
) -> None:
    checked = 0
    for expr in queries(board):
        concrete = substitute(expr, model)
        assert "$" not in concrete, concrete
        answer = idle_prometheus.query(concrete)
        assert answer["status"] == "success", f"{concrete}: {answer.get('error')}"
        checked += 1
    assert checked >= len(TOPICS)


def test_prometheus_refuses_a_broken_query(idle_prometheus: Prometheus) -> None:
    """The check above can fail: a query with Grafana's variables left in is not PromQL."""
    answer = idle_prometheus.query("sum(rate(modelfleet_requests_total[$__rate_interval]))")
    assert answer["status"] == "error"
    assert answer["errorType"] == "bad_data"


def test_default_dashboard_covers_every_model(tmp_path: Path) -> None:
    assert main(["monitor", "dashboard", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "modelfleet-dashboard.json").read_text())
    assert data["title"] == "modelfleet" and data["uid"] == "modelfleet"
    model = next(v for v in data["templating"]["list"] if v["name"] == "model")
    assert "current" not in model


def test_bad_model_or_unwritable_file_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["monitor", "dashboard", "--model", "a b", "--out", str(tmp_path / "x")]) == 1
    assert "invalid model reference 'a b'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["monitor", "dashboard", "--out", str(blocker / "board.json")]) == 1
    assert f"cannot write {blocker}/board.json" in capsys.readouterr().err
