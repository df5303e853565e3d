"""BentoML service that serves the benchmark forest (``rf.onnx``) with onnxruntime.

Imported by ``bentoml serve`` inside the ``benchmarks/.venvs/bentoml`` virtualenv (BentoML
1.4, "new style" ``@bentoml.service`` classes); never by the harness interpreter. The ONNX
file is named by the ``BENCH_RF_ONNX`` environment variable. Two services are defined, with
the same route and the same JSON:

* ``bentoml_service:RFPlain``: ``POST /predict`` is a plain API; each request runs alone.
* ``bentoml_service:RFBatched``: ``POST /predict`` is ``batchable=True`` with
  ``max_batch_size=64`` and ``max_latency_ms=1000``. BentoML's dispatcher concatenates
  the ``inputs`` arrays of queued requests along axis 0 (``max_batch_size`` counts rows;
  a request bigger than the room left is split), calls ``predict`` once and hands each
  caller its rows of the returned array. ``max_latency_ms`` is a deadline, not a wait:
  a request still queued after it is answered 503, so it is set far above the latencies
  the benchmark expects; how long to hold a batch open BentoML learns by itself.

Request (``Content-Type: application/json``)::

    {"inputs": [[20 floats], [20 floats], ...]}

Response, one row per input row, in order: the label (as a float, 0.0 or 1.0) then the
two class probabilities::

    [[0.0, 0.93, 0.07], [1.0, 0.31, 0.69], ...]

Why one array: a batchable API must return something BentoML can split back per request
along the batch axis (an array or a list), so a ``{"labels", "probabilities"}`` object is
not possible there, and the plain variant answers the same array so that batching on/off
is the only difference between the two. (BentoML 1.4.39 rebuilds the JSON schema of a
non-object return type on every response to pick its media type; a pydantic-object
return skips that and served 10-25% more 1-row requests per second in the plain variant
here, but cannot be batched.)

Both services run one worker process (``workers=1``), whose synchronous API runs on one
thread (``threads=1``, BentoML's default) with one onnxruntime intra-op and inter-op thread.
Access logs and the Prometheus metrics are off, as they are for the MLServer peer.
"""

from __future__ import annotations

import os
from typing import Annotated

import bentoml
import numpy as np
import onnxruntime as ort
from bentoml.validators import DType, Shape

MODEL_ENV = "BENCH_RF_ONNX"
N_FEATURES = 20
MAX_BATCH_SIZE = 64
MAX_LATENCY_MS = 1000

Rows = Annotated[np.ndarray, DType("float32"), Shape((-1, N_FEATURES))]

SERVICE_CONFIG = {
    "workers": 1,
    "threads": 1,
    "logging": {"access": {"enabled": False}},
    "metrics": {"enabled": False},
    "traffic": {"timeout": 60},
}


def _load_session() -> ort.InferenceSession:
    model_path = os.environ.get(MODEL_ENV)
    if not model_path:
        raise RuntimeError(f"set {MODEL_ENV} to the path of rf.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])


def _predict(session: ort.InferenceSession, rows: np.ndarray) -> np.ndarray:
    """``[N, 3]`` float32: label, P(class 0), P(class 1) per row."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    labels, probabilities = session.run(["label", "probabilities"], {"input": rows})
    return np.concatenate([labels.astype(np.float32)[:, None], probabilities], axis=1)


@bentoml.service(**SERVICE_CONFIG)
class RFPlain:
    def __init__(self) -> None:
        self.session = _load_session()

    @bentoml.api(route="/predict")
    def predict(self, inputs: Rows) -> np.ndarray:
        return _predict(self.session, inputs)


@bentoml.service(**SERVICE_CONFIG)
class RFBatched:
    def __init__(self) -> None:
        self.session = _load_session()

    @bentoml.api(
        route="/predict",
        batchable=True,
        batch_dim=0,
        max_batch_size=MAX_BATCH_SIZE,
        max_latency_ms=MAX_LATENCY_MS,
    )
    def predict(self, inputs: Rows) -> np.ndarray:
        return _predict(self.session, inputs)
