"""MLServer custom runtime that serves the benchmark forest (``rf.onnx``) with onnxruntime.

This module is imported by MLServer inside the ``benchmarks/.venvs/mlserver`` virtualenv
(``model-settings.json`` names it as ``mlserver_runtime.OnnxForestRuntime``; the launcher
puts this folder on ``PYTHONPATH``). It is never imported by the harness interpreter.

Protocol: Open Inference Protocol (V2) over REST, ``POST /v2/models/<name>/infer``::

    {"inputs": [{"name": "input", "datatype": "FP32", "shape": [N, 20],
                 "data": [... N*20 floats, row-major ...]}]}

answers::

    {"model_name": "rf", "outputs": [
        {"name": "label", "datatype": "INT64", "shape": [N], "data": [...]},
        {"name": "probabilities", "datatype": "FP32", "shape": [N, 2], "data": [...]}]}

One ``InferenceSession`` per model instance, one intra-op and one inter-op thread, run
inline on the server's event loop (as MLServer's own scikit-learn runtime does). With
adaptive batching on, MLServer merges up to ``max_batch_size`` *requests* (not rows) that
arrive within ``max_batch_time`` seconds into a single call of ``predict`` and splits the
outputs back along the first axis, which is why both outputs keep the row axis first.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput
from mlserver.utils import get_model_uri

N_FEATURES = 20


class OnnxForestRuntime(MLModel):
    """Answers V2 requests with input ``input`` FP32 [N, 20] from the ONNX forest."""

    async def load(self) -> bool:
        model_path = await get_model_uri(self.settings, wellknown_filenames=["rf.onnx"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            model_path, options, providers=["CPUExecutionProvider"]
        )
        self._output_names = [o.name for o in self._session.get_outputs()]
        if self._output_names != ["label", "probabilities"]:
            raise RuntimeError(f"{model_path}: unexpected outputs {self._output_names}")
        return True

    def _features(self, payload: InferenceRequest) -> np.ndarray:
        if len(payload.inputs) != 1 or payload.inputs[0].name != "input":
            names = [i.name for i in payload.inputs]
            raise InferenceError(f"expected exactly one input named 'input', got {names}")
        request_input = payload.inputs[0]
        if request_input.datatype != "FP32":
            raise InferenceError(f"input must be FP32, got {request_input.datatype}")
        shape = list(request_input.shape)
        if len(shape) != 2 or shape[1] != N_FEATURES:
            raise InferenceError(f"input shape must be [N, {N_FEATURES}], got {shape}")
        rows = NumpyCodec.decode_input(request_input)
        return np.ascontiguousarray(rows, dtype=np.float32)

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        rows = self._features(payload)
        labels, probabilities = self._session.run(self._output_names, {"input": rows})
        n_rows = int(rows.shape[0])
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[
                ResponseOutput(
                    name="label",
                    datatype="INT64",
                    shape=[n_rows],
                    data=labels.reshape(-1).tolist(),
                ),
                ResponseOutput(
                    name="probabilities",
                    datatype="FP32",
                    shape=[n_rows, int(probabilities.shape[1])],
                    data=probabilities.reshape(-1).tolist(),
                ),
            ],
        )
