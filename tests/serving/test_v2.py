"""The V2 protocol over real HTTP: metadata, every datatype, JSON and binary, errors."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable

import numpy as np
import orjson
import pytest

from modelfleet.registry import Registry
from modelfleet.serving.settings import ModelConfig
from tests.models import ALL_DTYPES, iris
from tests.serving.conftest import RunningServer

Start = Callable[..., RunningServer]


@pytest.fixture
def server(models: Registry, served: Start) -> RunningServer:
    return served(
        ModelConfig(ref="iris"),
        ModelConfig(ref="adder"),
        ModelConfig(ref="echo"),
        max_rows_per_request=1000,
        max_body_bytes=64 * 1024,
    )


def _row(values: list[float]) -> dict[str, object]:
    return {"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": values}]}


def test_health_and_server_metadata(server: RunningServer) -> None:
    assert server.http.get("/v2/health/live").json() == {"live": True}
    assert server.http.get("/v2/health/ready").json() == {"ready": True}
    meta = server.http.get("/v2").json()
    assert meta["name"] == "modelfleet"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata_versioned_and_unversioned(server: RunningServer) -> None:
    meta = server.http.get("/v2/models/adder").json()
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 3]}]
    assert meta["outputs"] == [{"name": "Y", "datatype": "FP32", "shape": [-1, 1]}]
    assert server.http.get("/v2/models/adder/versions/1").json()["name"] == "adder"
    assert server.http.get("/v2/models/adder/ready").json() == {"name": "adder", "ready": True}
    missing = server.http.get("/v2/models/adder/versions/9")
    assert missing.status_code == 404
    assert "adder version 9" in missing.json()["error"]
    assert server.http.get("/v2/models/nope").status_code == 404


def test_infer_flat_and_nested_data_with_id_and_parameters(server: RunningServer) -> None:
    flat = server.http.post("/v2/models/adder/infer", json={**_row([1.0, 2.0, 3.5]), "id": "req-7"})
    assert flat.status_code == 200
    body = flat.json()
    assert body["id"] == "req-7"
    assert body["model_name"] == "adder"
    assert body["model_version"] == "1"
    assert body["outputs"] == [{"name": "Y", "datatype": "FP32", "shape": [1, 1], "data": [6.5]}]
    nested = {
        "inputs": [
            {"name": "X", "shape": [2, 3], "datatype": "FP32", "data": [[1, 1, 1], [2, 2, 2]]}
        ],
        "parameters": {"priority": 1},
    }
    out = server.http.post("/v2/models/adder/versions/1/infer", json=nested).json()
    assert out["outputs"][0]["data"] == [3.0, 6.0]


def test_output_selection(server: RunningServer) -> None:
    X, _ = iris()
    request = {
        "inputs": [
            {"name": "input", "shape": [2, 4], "datatype": "FP32", "data": X[:2].ravel().tolist()}
        ],
        "outputs": [{"name": "probabilities"}],
    }
    out = server.http.post("/v2/models/iris/infer", json=request).json()
    assert [o["name"] for o in out["outputs"]] == ["probabilities"]
    assert out["outputs"][0]["shape"] == [2, 3]


def _echo_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    arrays = {}
    for name in ALL_DTYPES:
        if name == "string":
            arrays[name] = np.array([["a", "β"], ["", "long text"]], dtype=object)
        elif name == "bool":
            arrays[name] = np.array([[True, False], [False, True]])
        elif np.dtype(name).kind in "iu":
            info = np.iinfo(name)
            arrays[name] = np.array([[info.min, info.max], [0, 1]], dtype=name)
        else:
            arrays[name] = rng.normal(size=(2, 2)).astype(name)
    return arrays


V2_NAMES = {
    "bool": "BOOL",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "string": "BYTES",
}


def test_every_datatype_round_trips_as_json(server: RunningServer) -> None:
    arrays = _echo_inputs()
    inputs = [
        {"name": f"x_{n}", "shape": [2, 2], "datatype": V2_NAMES[n], "data": a.ravel().tolist()}
        for n, a in arrays.items()
    ]
    out = server.http.post("/v2/models/echo/infer", json={"inputs": inputs})
    assert out.status_code == 200, out.text
    got = {o["name"]: o for o in out.json()["outputs"]}
    for name, array in arrays.items():
        entry = got[f"y_{name}"]
        assert entry["datatype"] == V2_NAMES[name]
        values = np.array(entry["data"], dtype=object if name == "string" else name)
        np.testing.assert_array_equal(values.reshape(2, 2), array)


def test_tritonclient_json_and_binary(server: RunningServer) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("echo")
    assert client.get_model_metadata("echo")["name"] == "echo"
    assert client.get_model_config("adder")["max_batch_size"] > 0
    arrays = _echo_inputs()
    for binary in (False, True):
        inputs, outputs = [], []
        for name, array in arrays.items():
            # tritonclient sends FP16 only as binary (as Triton defines); mixing is allowed.
            as_binary = binary or name == "float16"
            tensor = triton.InferInput(f"x_{name}", list(array.shape), V2_NAMES[name])
            tensor.set_data_from_numpy(array, binary_data=as_binary)
            inputs.append(tensor)
            outputs.append(triton.InferRequestedOutput(f"y_{name}", binary_data=as_binary))
        result = client.infer("echo", inputs, outputs=outputs, request_id="t-1")
        assert result.get_response()["id"] == "t-1"
        for name, array in arrays.items():
            got = result.as_numpy(f"y_{name}")
            if name == "string":
                got = np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else v)(got)
            np.testing.assert_array_equal(got, array)
    client.close()


def test_tritonclient_on_a_real_model(server: RunningServer) -> None:
    import tritonclient.http as triton

    X, _ = iris()
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    tensor = triton.InferInput("input", [5, 4], "FP32")
    tensor.set_data_from_numpy(X[:5], binary_data=True)
    result = client.infer("iris", [tensor], timeout=10_000_000, priority=1)
    assert result.as_numpy("label").tolist() == [0, 0, 0, 0, 0]
    assert result.as_numpy("probabilities").shape == (5, 3)
    client.close()


def test_kserve_rest_client_v2_and_v1(server: RunningServer) -> None:
    import asyncio

    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    X, _ = iris()

    async def call() -> tuple[object, object]:
        v2 = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
        tensor = InferInput("input", [3, 4], "FP32")
        tensor.set_data_from_numpy(X[:3], binary_data=False)
        assert await v2.is_server_ready(server.url)
        result = await v2.infer(server.url, InferRequest("iris", [tensor]), model_name="iris")
        tensor_b = InferInput("input", [3, 4], "FP32")
        tensor_b.set_data_from_numpy(X[:3], binary_data=True)
        binary = await v2.infer(server.url, InferRequest("iris", [tensor_b]), model_name="iris")
        await v2.close()
        v1 = InferenceRESTClient(RESTConfig(protocol="v1", retries=0))
        predicted = await v1.infer(server.url, {"instances": X[:3].tolist()}, model_name="iris")
        await v1.close()
        return (result, binary), predicted

    (result, binary), predicted = asyncio.run(call())
    labels = {o.name: o.as_numpy() for o in result.outputs}["label"]
    assert labels.tolist() == [0, 0, 0]
    assert {o.name: o.as_numpy() for o in binary.outputs}["label"].tolist() == [0, 0, 0]
    assert predicted["predictions"] == [0, 0, 0]
    assert len(predicted["probabilities"][0]) == 3


def test_v1_predict_with_records_and_rows(server: RunningServer) -> None:
    rows = server.http.post("/v1/models/adder:predict", json={"instances": [[1, 2, 3], [0, 0, 1]]})
    assert rows.json() == {"predictions": [[6.0], [1.0]]}
    assert server.http.get("/v1/models/adder").json() == {"name": "adder", "ready": True}
    bad = server.http.post("/v1/models/adder:predict", json={"instances": []})
    assert bad.status_code == 400


def test_sdk_client(server: RunningServer) -> None:
    from modelfleet.client import Client, RemoteError

    X, _ = iris()
    with Client(server.url) as client:
        out = client.predict("iris", X[:4])
        assert out["label"].tolist() == [0, 0, 0, 0]
        assert client.ready()
        json_client = Client(server.url, binary=False)
        assert json_client.predict("adder", np.ones((2, 3), np.float32))["Y"].tolist() == [[3], [3]]
        json_client.close()
        with pytest.raises(RemoteError, match=r"404.*not served"):
            client.predict("ghost", X[:1])
        with pytest.raises(RemoteError, match="400"):
            client.predict("iris", np.ones((2, 7), np.float32))


def _error(response: object) -> str:
    return orjson.loads(response.content)["error"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[]", 400, "JSON object"),
        (b'{"inputs": []}', 400, "no 'inputs'"),
        (json.dumps(_row([1, 2])).encode(), 400, "needs 3 values"),
        (
            json.dumps(
                {
                    "inputs": [
                        {"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
                    ]
                }
            ).encode(),
            400,
            r"shape \[1, 4\]",
        ),
        (
            json.dumps(
                {"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP99", "data": [1, 2, 3]}]}
            ).encode(),
            400,
            "unknown datatype",
        ),
        (
            json.dumps(
                {
                    "inputs": [
                        {"name": "X", "shape": [1, 3], "datatype": "FP32", "data": ["a", "b", "c"]}
                    ]
                }
            ).encode(),
            400,
            "FP32 values",
        ),
        (
            json.dumps(
                {"inputs": [{"name": "Z", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
            ).encode(),
            400,
            "missing inputs",
        ),
        (
            json.dumps({**_row([1, 2, 3]), "outputs": [{"name": "nope"}]}).encode(),
            400,
            "unknown outputs",
        ),
        (json.dumps({**_row([1, 2, 3]), "parameters": {"timeout": -5}}).encode(), 400, "timeout"),
    ],
)
def test_bad_requests_get_400_with_a_message(
    server: RunningServer, body: bytes, status: int, fragment: str
) -> None:
    response = server.http.post("/v2/models/adder/infer", content=body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert re.search(fragment, _error(response)), _error(response)


def test_routing_and_limit_errors(server: RunningServer) -> None:
    unknown = server.http.post("/v2/models/ghost/infer", json=_row([1, 2, 3]))
    assert unknown.status_code == 404
    assert "served models: adder, echo, iris" in _error(unknown)
    route = server.http.get("/v3/whatever")
    assert route.status_code == 404 and "no route" in _error(route)
    method = server.http.get("/v2/models/adder/infer")
    assert method.status_code == 405 and "POST" in _error(method)
    big = server.http.post("/v2/models/adder/infer", content=b"x" * (70 * 1024))
    assert big.status_code == 413 and "65536" in _error(big)
    rows = np.ones((1001, 3), np.float32)
    many = server.http.post(
        "/v2/models/adder/infer",
        json={
            "inputs": [
                {"name": "X", "shape": [1001, 3], "datatype": "FP32", "data": rows.ravel().tolist()}
            ]
        },
    )
    assert many.status_code in (400, 413)
    if many.status_code == 400:
        assert "limit of 1000 rows" in _error(many)
    binary_rows = server.http.post(
        "/v2/models/adder/infer",
        content=json.dumps(
            {
                "inputs": [
                    {
                        "name": "X",
                        "shape": [1001, 3],
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": rows.nbytes},
                    }
                ]
            }
        ).encode()
        + rows.tobytes(),
        headers={
            "inference-header-content-length": str(
                len(
                    json.dumps(
                        {
                            "inputs": [
                                {
                                    "name": "X",
                                    "shape": [1001, 3],
                                    "datatype": "FP32",
                                    "parameters": {"binary_data_size": rows.nbytes},
                                }
                            ]
                        }
                    )
                )
            )
        },
    )
    assert binary_rows.status_code == 400
    assert "limit of 1000 rows" in _error(binary_rows)


def test_binary_errors_and_compressed_bodies(server: RunningServer) -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "X",
                    "shape": [1, 3],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 12},
                }
            ]
        }
    ).encode()
    payload = np.array([1, 2, 3], np.float32).tobytes()
    ok = server.http.post(
        "/v2/models/adder/infer",
        content=header + payload,
        headers={"inference-header-content-length": str(len(header))},
    )
    assert ok.json()["outputs"][0]["data"] == [6.0]
    short = server.http.post(
        "/v2/models/adder/infer",
        content=header + payload[:8],
        headers={"inference-header-content-length": str(len(header))},
    )
    assert short.status_code == 400
    bad_length = server.http.post(
        "/v2/models/adder/infer",
        content=header,
        headers={"inference-header-content-length": "99999"},
    )
    assert bad_length.status_code == 400
    zipped = server.http.post(
        "/v2/models/adder/infer",
        content=gzip.compress(json.dumps(_row([1, 1, 1])).encode()),
        headers={"content-encoding": "gzip"},
    )
    assert zipped.json()["outputs"][0]["data"] == [3.0]
    bomb = server.http.post(
        "/v2/models/adder/infer",
        content=gzip.compress(b" " * (1 << 20)),
        headers={"content-encoding": "gzip"},
    )
    assert bomb.status_code == 413


def test_openapi_and_docs_page(server: RunningServer) -> None:
    doc = server.http.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/v2/models/{name}/infer" in doc["paths"]
    page = server.http.get("/docs")
    assert page.headers["content-type"].startswith("text/html")
    assert "/v2/models/{name}/infer" in page.text
    assert "<script" not in page.text  # nothing fetched from a CDN
    assert "https://" not in page.text


def test_an_error_reads_the_same_on_every_route(server: RunningServer) -> None:
    answers = [
        server.http.get("/v2/models/ghost"),
        server.http.get("/v2/models/ghost/config"),
        server.http.post("/v2/models/ghost/infer", json=_row([1, 2, 3])),
        server.http.post("/v1/models/ghost:predict", json={"instances": [[1, 2, 3]]}),
    ]
    for answer in answers:
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/json"
        assert list(answer.json()) == ["error"]
        assert "served models: adder, echo, iris" in _error(answer)
