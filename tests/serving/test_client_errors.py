"""The Python client's failures are clear errors: unreachable or silent servers, odd inputs."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import modelfleet as mf
from modelfleet.client import Client
from modelfleet.errors import ModelfleetError
from modelfleet.registry import Registry
from modelfleet.serving.settings import ModelConfig, ServeConfig
from tests.conftest import make_settings
from tests.models import iris, logistic_pipeline, sum_graph
from tests.servers import free_port
from tests.serving.conftest import RunningServer, run_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MODELFLEET_HOME", raising=False)
        settings = make_settings(tmp_path_factory.mktemp("client-errors") / "home")
        with Registry.open(settings) as registry:
            model, X, y = logistic_pipeline()
            metrics = {"accuracy": model.score(X, y)}
            mf.register(model, name="iris", sample_input=X, metrics=metrics, registry=registry)
            mf.register(sum_graph(), name="adder", registry=registry)
        config = ServeConfig(models=(ModelConfig(ref="iris"), ModelConfig(ref="adder")))
        with run_server(config, settings) as running:
            yield running


CALLS: dict[str, Callable[[Client], Any]] = {
    "predict": lambda c: c.predict("adder", np.ones((1, 3), dtype=np.float32)),
    "predict-json": lambda c: Client(c.url, binary=False).predict("adder", {"X": np.ones((1, 3))}),
    "reload": lambda c: c.reload(),
    "reload-one": lambda c: c.reload("adder"),
    "metadata": lambda c: c.metadata("adder"),
    "live": lambda c: c.live(),
    "ready": lambda c: c.ready(),
    "summary": lambda c: c.summary(),
    "feedback": lambda c: c.feedback("iris", ["r1"], [1]),
}


@pytest.mark.parametrize("call", list(CALLS), ids=list(CALLS))
def test_every_call_to_an_unreachable_server_says_check_the_url(call: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with Client(url) as client, pytest.raises(ModelfleetError) as caught:
        CALLS[call](client)
    assert str(caught.value).startswith(f"cannot reach {url}: ")
    assert "check the URL" in str(caught.value)


def test_a_server_that_never_answers_is_a_clear_error_not_a_raw_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # connections complete, but nobody ever reads or answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with Client(url, timeout=0.3) as client, pytest.raises(ModelfleetError) as caught:
            client.predict("adder", np.ones((1, 3), dtype=np.float32))
    assert str(caught.value).startswith(f"no answer from {url} within 0.3 s")


def test_feedback_takes_a_per_row_list_of_numpy_labels(server: RunningServer) -> None:
    X, y = iris()
    with Client(server.url) as client:
        client.predict("iris", X[:2], request_id="rows-1")
        answer = client.feedback("iris", ["rows-1"], [list(y[:2])])
    assert isinstance(y[0], np.generic)  # what the labels were: numpy integers
    assert answer["accepted"] == 1


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_big_endian_arrays_are_sent_as_their_values(server: RunningServer, binary: bool) -> None:
    data = np.array([[1.0, 2.0, 3.5], [-1.0, 0.25, 4.0]], dtype=">f4")
    with Client(server.url, binary=binary) as client:
        result = client.predict("adder", data)
    np.testing.assert_array_equal(result["Y"], [[6.5], [3.25]])
