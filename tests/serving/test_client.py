"""The Python client against a real server: both encodings, inputs of every kind, ids, errors."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np
import pytest

import modelfleet as mf
from modelfleet.client import Client, RemoteError
from modelfleet.errors import ModelfleetError, ServingError
from modelfleet.registry import Registry
from modelfleet.serving.auth import new_token
from modelfleet.serving.settings import ModelConfig, ServeConfig, TokenConfig
from tests.conftest import make_settings
from tests.models import ALL_DTYPES, echo_graph, iris, logistic_pipeline, sum_graph
from tests.servers import free_port
from tests.serving.conftest import RunningServer, run_server

Start = Callable[..., RunningServer]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the module (starting one takes seconds); each test uses its own ids."""
    with pytest.MonkeyPatch.context() as env:
        for key in [k for k in os.environ if k.startswith("MODELFLEET_")]:
            env.delenv(key)
        settings = make_settings(tmp_path_factory.mktemp("client") / "home")
        with Registry.open(settings) as registry:
            model, X, y = logistic_pipeline()
            metrics = {"accuracy": model.score(X, y)}
            mf.register(model, name="iris", sample_input=X, metrics=metrics, registry=registry)
            mf.register(sum_graph(), name="adder", metrics={"accuracy": 1.0}, registry=registry)
            mf.register(echo_graph(), name="echo", registry=registry)
        names = ("iris", "adder", "echo")
        config = ServeConfig(models=tuple(ModelConfig(ref=n) for n in names))
        with run_server(config, settings) as running:
            yield running


def _echo_inputs() -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for dtype in ALL_DTYPES:
        if dtype == "string":
            arrays["x_string"] = np.array([["a", "β"], ["", "long text"]])  # numpy 'U' strings
        elif dtype == "bool":
            arrays["x_bool"] = np.array([[True, False], [False, True]])
        elif np.dtype(dtype).kind in "iu":
            info = np.iinfo(dtype)
            arrays[f"x_{dtype}"] = np.array([[info.min, info.max], [0, 1]], dtype=dtype)
        else:
            arrays[f"x_{dtype}"] = np.array([[-1.5, 0.25], [3, 1e-3]], dtype=dtype)
    return arrays


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_every_datatype_comes_back_unchanged(server: RunningServer, binary: bool) -> None:
    inputs = _echo_inputs()
    with Client(server.url, binary=binary) as client:
        out = client.predict("echo", inputs)
    assert sorted(out) == sorted(f"y_{d}" for d in ALL_DTYPES)
    for name, array in inputs.items():
        got = out["y" + name[1:]]
        expected = array.astype(object) if array.dtype.kind == "U" else array
        assert got.dtype == expected.dtype, name
        np.testing.assert_array_equal(got, expected)


def test_binary_and_json_answers_agree_on_a_real_model(server: RunningServer) -> None:
    X, y = iris()
    with Client(server.url) as fast, Client(server.url, binary=False) as plain:
        a = fast.predict("iris", X[::10], cache=False)
        b = plain.predict("iris", X[::10].tolist(), cache=False)  # plain lists work too
    assert a["label"].tolist() == b["label"].tolist()
    assert (a["label"] == y[::10]).mean() > 0.9
    np.testing.assert_allclose(a["probabilities"], b["probabilities"], rtol=1e-6)
    np.testing.assert_allclose(a["probabilities"].sum(axis=1), 1.0, rtol=1e-5)


def test_outputs_versions_and_metadata(server: RunningServer) -> None:
    X, _ = iris()
    with Client(server.url) as client:
        assert client.live() and client.ready()
        meta = client.metadata("iris", version="1")
        assert meta["name"] == "iris" and meta["inputs"][0]["shape"] == [-1, 4]
        only = client.predict("iris", X[:2], version="1", outputs=["probabilities"])
        assert list(only) == ["probabilities"] and only["probabilities"].shape == (2, 3)
        with pytest.raises(RemoteError) as info:
            client.predict("iris", X[:2], version="7")
        assert info.value.status == 404
        assert str(info.value).startswith("server answered 404: model 'iris version 7'")
        with pytest.raises(RemoteError) as info:
            client.metadata("ghost")
        assert info.value.status == 404 and "served models: adder, echo, iris" in str(info.value)


def test_request_ids_cache_bypass_priority_and_timeout(server: RunningServer) -> None:
    hits = server.metric("modelfleet_cache_lookups_total", model="adder", result="hit")
    x = np.array([[1, 2, 30]], np.float32)  # no other test sends this row
    with Client(server.url) as client:
        assert client.predict("adder", x, request_id="mine-1")["Y"].tolist() == [[33]]
        assert client.last_request_id == "mine-1"
        client.predict("adder", x)
        first = client.last_request_id
        client.predict("adder", x, cache=False, priority=1, timeout_ms=5000)
        assert first and client.last_request_id and first != client.last_request_id
    after = server.metric("modelfleet_cache_lookups_total", model="adder", result="hit")
    assert after - hits == 1  # the second call; the third asked not to be cached


def test_a_multi_input_model_needs_named_inputs(server: RunningServer) -> None:
    with Client(server.url) as client, pytest.raises(ServingError) as info:
        client.predict("echo", np.zeros((1, 2), np.float32))
    assert not isinstance(info.value, RemoteError)  # refused before anything is sent
    assert str(info.value).startswith("model 'echo' takes 13 inputs; pass a dict or a DataFrame")
    assert info.value.hint is not None and info.value.hint.startswith("inputs: x_bool, x_int8")


def test_bad_input_reaches_the_caller_as_a_remote_400(server: RunningServer) -> None:
    with Client(server.url) as client:
        with pytest.raises(RemoteError) as info:
            client.predict("adder", np.ones((2, 5), np.float32))
        assert info.value.status == 400
        assert "X" in str(info.value)
        assert client.predict("adder", np.ones((1, 3), np.float32))["Y"].tolist() == [[3]]


def test_feedback_and_summary_of_a_classifier(server: RunningServer) -> None:
    X, y = iris()
    with Client(server.url) as client:
        client.predict("iris", X[:3], request_id="fb-1")
        client.predict("iris", X[50:52], request_id="fb-2")
        doc = client.feedback(
            "iris", ["fb-1", "fb-2"], [np.array(y[:3]), [int(v) for v in y[50:52]]]
        )
        assert (doc["model"], doc["accepted"], doc["rows"]) == ("iris", 2, 5)
        assert doc["live_accuracy"]["labelled_requests"] == 2  # only this test sends labels
        with pytest.raises(RemoteError) as info:
            client.feedback("iris", ["never-sent"], [0])
        assert info.value.status == 404
        names = sorted(m["name"] for m in client.summary()["models"])
        assert names == ["adder", "echo", "iris"]


def test_tokens_and_reload(registry: Registry, served: Start) -> None:
    mf.register(sum_graph(), name="adder", registry=registry)
    value, digest = new_token()
    admin_value, admin_digest = new_token()
    server = served(
        ModelConfig(ref="adder"),
        tokens=(
            TokenConfig(name="app", sha256=digest),
            TokenConfig(name="ops", sha256=admin_digest, scopes=("infer", "admin")),
        ),
    )
    x = np.ones((1, 3), np.float32)
    with Client(server.url) as anonymous:
        with pytest.raises(RemoteError) as info:
            anonymous.predict("adder", x)
        assert info.value.status == 401
    with Client(server.url, token=value) as app:
        assert app.predict("adder", x)["Y"].tolist() == [[3]]
        with pytest.raises(RemoteError) as info:
            app.reload("adder")
        assert info.value.status == 403
    with Client(server.url, token=admin_value) as ops:
        status = ops.reload("adder")
        assert (status["name"], status["version"]) == ("adder", "1")


def test_an_unreachable_server_is_named_with_a_hint() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url + "/", timeout=5) as client:
        assert client.url == url
        with pytest.raises(ModelfleetError) as info:
            client.summary()
    assert str(info.value).startswith(f"cannot reach {url}: ")
    assert info.value.hint == "check the URL and that the server runs"
