"""The canary judge on figures read from real servers: good candidates promote, worse ones
roll back with the rule that caught them, and too little traffic is a verdict of its own.

Each test starts real modelfleet servers in-process ("pods" of the stable and the canary
track), sends them traffic round-robin the way a Service spreads it over ready pods, and
reads their ``/metrics`` over HTTP before and after: the same figures the release reads
through the API server's pod proxy in a cluster. Thresholds that a test does not judge
are set out of reach, so a slow moment on a busy machine cannot decide it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import numpy as np
import pytest

import modelfleet as mf
from modelfleet.config import Settings
from modelfleet.deploy import HttpScraper, Observation, Thresholds, Verdict, judge, watch
from modelfleet.errors import DeployError
from modelfleet.registry import Registry
from modelfleet.serving.settings import ModelConfig, ServeConfig
from tests.conftest import make_settings
from tests.models import iris, logistic_pipeline
from tests.servers import free_port
from tests.serving.conftest import RunningServer, run_server


def tower_graph(layers: int, width: int = 768, features: int = 8) -> Any:
    """X float32[N, features] -> Y float32[N, 1] through ``layers`` width x width MatMul+Tanh:
    the same signature at any depth, and a cost per row that grows with it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    project = rng.normal(size=(features, width)) / np.sqrt(features)
    inits = [numpy_helper.from_array(project.astype(np.float32), "W_in")]
    nodes = [helper.make_node("MatMul", ["X", "W_in"], ["h"])]
    current = "h"
    for i in range(layers):
        weight = rng.normal(size=(width, width)) / np.sqrt(width)
        inits.append(numpy_helper.from_array(weight.astype(np.float32), f"W{i}"))
        nodes.append(helper.make_node("MatMul", [current, f"W{i}"], [f"m{i}"]))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"a{i}"]))
        current = f"a{i}"
    inits.append(helper.make_tensor("axes", TensorProto.INT64, [1], [1]))
    nodes.append(helper.make_node("ReduceSum", [current, "axes"], ["Y"], keepdims=1))
    graph = helper.make_graph(
        nodes,
        "tower",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 1])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def lookup_graph(size: int) -> Any:
    """X float32[N, 1] -> Y float32[N, 1]: row i of a ``size``-row table; ONNX Runtime fails
    the request when an index is past the table (the server answers 500)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = np.arange(size, dtype=np.float32).reshape(size, 1)
    nodes = [
        helper.make_node("Cast", ["X"], ["i"], to=TensorProto.INT64),
        helper.make_node("Squeeze", ["i", "axes"], ["flat"]),
        helper.make_node("Gather", ["table", "flat"], ["Y"], axis=0),
    ]
    graph = helper.make_graph(
        nodes,
        "lookup",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 1])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            numpy_helper.from_array(table, "table"),
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """iris 1 and 2 (the same good model), iris 3 (learned shifted labels); scorer 1 (light)
    and 2 (deep); lookup 1 (ten rows) and 2 (two rows: fails for most inputs)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    settings = make_settings(tmp_path_factory.mktemp("release-home"))
    model, X, y = logistic_pipeline()
    wrong = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, (y + 1) % 3)
    with Registry.open(settings) as registry:
        for fitted in (model, model, wrong):
            mf.register(fitted, name="iris", sample_input=X, registry=registry)
        for layers in (0, 8):
            mf.register(tower_graph(layers), name="scorer", registry=registry)
        for size in (10, 2):
            mf.register(lookup_graph(size), name="lookup", registry=registry)
    return settings


class Tracks:
    """Servers of a stable and a canary version, fed like a Service feeds ready pods."""

    def __init__(self, stack: ExitStack, settings: Settings, model: str, pods: dict[str, Any]):
        self.model = model
        self.servers: dict[str, list[RunningServer]] = {}
        for track, (version, count) in pods.items():
            config = ServeConfig(models=(ModelConfig(ref=f"{model}:{version}"),))
            self.servers[track] = [
                stack.enter_context(run_server(config, settings)) for _ in range(count)
            ]
        self.versions = {track: str(pods[track][0]) for track in pods}
        self.scraper = HttpScraper({t: [s.url for s in found] for t, found in self.servers.items()})

    def pods(self) -> list[RunningServer]:
        """Every server, the stable's first: requests go round-robin over them."""
        return [server for found in self.servers.values() for server in found]

    def infer(self, server: RunningServer, name: str, rows: np.ndarray[Any, Any]) -> Any:
        body = {
            "inputs": [
                {
                    "name": name,
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "data": rows.ravel().tolist(),
                }
            ]
        }
        # no-cache: every request runs the model, as every new input would
        return server.http.post(
            f"/v2/models/{self.model}/infer", json=body, headers={"Cache-Control": "no-cache"}
        )

    def observe(self, send: Any, thresholds: Thresholds) -> Verdict:
        """Read the figures, run ``send(pods)`` (the window's traffic), read again, judge."""
        observation = Observation(self.scraper, self.model, self.versions)
        send(self.pods())
        figures = observation.figures()
        return judge(figures["stable"], figures["canary"], thresholds)


@pytest.fixture
def tracks(home: Settings) -> Iterator[Any]:
    with ExitStack() as stack:
        yield lambda model, **pods: Tracks(stack, home, model, pods)


def iris_traffic(tracks: Tracks, rounds: int, *, feedback: bool = True) -> Any:
    """Every iris row, ``rounds`` times, round-robin; then each pod gets its rows' true labels."""
    X, y = iris()

    def send(pods: list[RunningServer]) -> None:
        answered: dict[int, tuple[list[str], list[int]]] = {}
        order = [(i, pods[i % len(pods)]) for i in range(len(X) * rounds)]
        for i, pod in order:
            answer = tracks.infer(pod, "input", X[i % len(X)].reshape(1, 4))
            assert answer.status_code == 200, answer.text
            ids, labels = answered.setdefault(id(pod), ([], []))
            ids.append(answer.json()["id"])
            labels.append(int(y[i % len(X)]))
        for pod in pods if feedback else []:
            ids, labels = answered[id(pod)]
            sent = pod.http.post(
                "/v2/models/iris/feedback", json={"request_ids": ids, "labels": labels}
            )
            assert sent.status_code == 200, sent.text

    return send


def failed_rules(verdict: Verdict) -> list[str]:
    return [c.rule for c in verdict.checks if c.passed is False]


def test_a_candidate_as_good_as_the_stable_is_promoted(tracks: Any) -> None:
    # Two stable pods and one canary pod: the canary answers a third of the requests.
    pair = tracks("iris", stable=(1, 2), canary=(2, 1))
    limits = Thresholds(min_requests=100, min_labelled=100, accuracy_delta=0.1, p99_floor_ms=60_000)
    verdict = pair.observe(iris_traffic(pair, rounds=2), limits)
    assert verdict.decision == "promote", verdict.reasons
    assert verdict.promote and verdict.reasons == []
    assert {c.rule: c.passed for c in verdict.checks} == {
        "traffic": True,
        "errors": True,
        "latency": True,
        "accuracy": True,
    }
    stable, canary = verdict.stable, verdict.canary
    assert (stable.pods, canary.pods) == (2, 1)
    assert (stable.requests, canary.requests) == (200, 100)
    assert (stable.labelled, canary.labelled) == (200, 100)
    assert stable.errors == canary.errors == 0
    assert stable.accuracy is not None and stable.accuracy > 0.9
    assert canary.accuracy is not None and canary.accuracy > 0.9
    assert (stable.version, canary.version) == ("1", "2")


def test_a_candidate_that_learned_wrong_labels_rolls_back_on_live_accuracy(tracks: Any) -> None:
    pair = tracks("iris", stable=(1, 1), canary=(3, 1))
    limits = Thresholds(min_requests=100, min_labelled=100, p99_floor_ms=60_000)
    verdict = pair.observe(iris_traffic(pair, rounds=2), limits)
    assert verdict.decision == "rollback"
    assert failed_rules(verdict) == ["accuracy"]
    assert verdict.canary.accuracy is not None and verdict.canary.accuracy < 0.5
    assert verdict.stable.accuracy is not None and verdict.stable.accuracy > 0.9
    (reason,) = verdict.reasons
    assert reason.startswith("canary live accuracy")
    assert "below the limit" in reason
    assert "rows" in reason


def test_accuracy_is_not_judged_without_enough_labels(tracks: Any) -> None:
    # The same bad candidate, but no feedback arrives in the window: nothing to judge it by.
    pair = tracks("iris", stable=(1, 1), canary=(3, 1))
    limits = Thresholds(min_requests=100, p99_floor_ms=60_000)
    verdict = pair.observe(iris_traffic(pair, rounds=2, feedback=False), limits)
    assert verdict.decision == "promote"
    (accuracy,) = [c for c in verdict.checks if c.rule == "accuracy"]
    assert accuracy.passed is None
    assert accuracy.detail.startswith("not judged: 0 stable and 0 canary labelled rows")


def test_a_slower_candidate_rolls_back_on_p99(tracks: Any) -> None:
    pair = tracks("scorer", stable=(1, 1), canary=(2, 1))
    rng = np.random.default_rng(1)

    def send(pods: list[RunningServer]) -> None:
        for i in range(80):
            # 1024 rows: the deep graph takes ten times the light one's time or more, far
            # beyond what a scheduling hiccup adds to a request
            rows = rng.random((1024, 8), dtype=np.float32)
            answer = pair.infer(pods[i % 2], "X", rows)
            assert answer.status_code == 200, answer.text

    for pod in pair.pods():  # warm, as a pod is before it turns ready
        pair.infer(pod, "X", rng.random((1024, 8), dtype=np.float32))
    limits = Thresholds(min_requests=40, max_p99_ratio=1.5, p99_floor_ms=0.0)
    verdict = pair.observe(send, limits)
    assert verdict.decision == "rollback"
    assert failed_rules(verdict) == ["latency"]
    assert verdict.canary.p99_ms is not None and verdict.stable.p99_ms is not None
    assert verdict.canary.p99_ms > 1.5 * verdict.stable.p99_ms
    assert verdict.reasons[0].startswith("canary p99")


def test_a_candidate_that_fails_requests_rolls_back_on_errors(tracks: Any) -> None:
    pair = tracks("lookup", stable=(1, 1), canary=(2, 1))

    def send(pods: list[RunningServer]) -> None:
        stable, canary = pods
        for i in range(200):  # each pod sees indices 0-9; the canary's table has rows 0-1
            pod, index = (stable, canary)[i % 2], (i // 2) % 10
            answer = pair.infer(pod, "X", np.array([[index]], dtype=np.float32))
            assert answer.status_code == (500 if pod is canary and index >= 2 else 200)

    limits = Thresholds(min_requests=100, p99_floor_ms=60_000)
    verdict = pair.observe(send, limits)
    assert verdict.decision == "rollback"
    assert failed_rules(verdict) == ["errors"]
    assert verdict.stable.error_ratio == 0
    assert verdict.canary.error_ratio == pytest.approx(0.8)
    assert "above the limit 1.00%" in verdict.reasons[0]


def test_too_little_traffic_is_its_own_verdict_and_never_promotes(tracks: Any) -> None:
    pair = tracks("iris", stable=(1, 1), canary=(2, 1))
    X, _ = iris()

    def send(pods: list[RunningServer]) -> None:
        for i in range(30):
            assert pair.infer(pods[i % 2], "input", X[i].reshape(1, 4)).status_code == 200

    verdict = pair.observe(send, Thresholds())  # the default: 100 requests per track
    assert verdict.decision == "not-enough-traffic"
    assert not verdict.promote
    assert [c.rule for c in verdict.checks] == ["traffic"]
    (reason,) = verdict.reasons
    assert reason.startswith("not enough traffic in ")
    assert "stable 15, canary 15 requests, need 100 per track" in reason


def test_a_short_window_is_extended_until_the_traffic_suffices(tracks: Any) -> None:
    pair = tracks("iris", stable=(1, 1), canary=(2, 1))
    X, _ = iris()
    bursts = iter([20, 200])  # what each window brings: too little, then plenty
    said: list[str] = []
    waits: list[float] = []

    def window(seconds: float) -> None:  # the release sleeps here; traffic arrives meanwhile
        waits.append(seconds)
        for i in range(next(bursts)):
            assert (
                pair.infer(pair.pods()[i % 2], "input", X[i % 150].reshape(1, 4)).status_code == 200
            )

    limits = Thresholds(p99_floor_ms=60_000)
    verdict = watch(
        pair.scraper,
        "iris",
        pair.versions,
        limits,
        window_s=60,
        max_window_s=150,
        sleep=window,
        say=said.append,
    )
    assert waits == [60, 60]
    assert verdict.decision == "promote", verdict.reasons
    # The second judgement counts from the same start: both bursts are in it.
    assert (verdict.stable.requests, verdict.canary.requests) == (110, 110)
    assert said == [
        "judging the canary for 60 s",
        "too little traffic so far (10 stable, 10 canary requests)",
        "judging the canary for 60 s",
    ]


def test_when_the_longest_window_ends_short_the_verdict_says_so(tracks: Any) -> None:
    pair = tracks("iris", stable=(1, 1), canary=(2, 1))
    waits: list[float] = []
    verdict = watch(
        pair.scraper,
        "iris",
        pair.versions,
        Thresholds(),
        window_s=60,
        max_window_s=90,
        sleep=waits.append,  # no traffic at all
    )
    assert waits == [60, 30]  # the last window is cut to end at the longest
    assert verdict.decision == "not-enough-traffic"
    assert verdict.reasons == [
        f"not enough traffic in {verdict.canary.seconds:.0f} s: stable 0, canary 0 requests, "
        "need 100 per track (give a longer --window or --max-window)"
    ]


def test_a_server_that_cannot_be_read_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DeployError, match=rf"cannot read {url}/metrics"):
        HttpScraper({"stable": [url]}).expositions("stable")
