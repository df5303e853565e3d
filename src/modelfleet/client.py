"""Python client of a modelfleet server: ``Client(url).predict(name, X)``.

It speaks the V2 protocol with binary tensors by default (no float-to-text round trip) and
turns error responses into :class:`RemoteError` carrying the server's message and status.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np

from modelfleet.errors import ModelfleetError, ServingError
from modelfleet.serving import HEADER_LENGTH, decode_response, encode_request
from modelfleet.signature import to_named_arrays


class RemoteError(ServingError):
    """The server answered with an error; ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(f"server answered {status}: {message}")


class Client:
    """A connection to one modelfleet (or any V2) server."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        binary: bool = True,
    ) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.binary = binary
        self.url = url.rstrip("/")
        self.last_request_id: str | None = None  # of the latest predict(): for feedback()
        self._input_names: dict[str, list[str]] = {}

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise RemoteError(response.status_code, message)
        return response

    def live(self) -> bool:
        """``GET /v2/health/live``."""
        return self._request("GET", "/v2/health/live").status_code == 200

    def ready(self) -> bool:
        """``GET /v2/health/ready``."""
        return self._request("GET", "/v2/health/ready").status_code == 200

    def metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Model metadata: inputs, outputs, version, variant."""
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "")
        doc: dict[str, Any] = self._send("GET", path).json()
        return doc

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The one place a request goes out: an unreachable server is a clear error."""
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.TimeoutException) and not isinstance(
                exc, httpx.ConnectTimeout
            ):  # connected, but the answer is late: the URL is right, the server is slow
                raise ModelfleetError(
                    f"no answer from {self.url} within {self._http.timeout.read or 0:g} s",
                    hint="check the server is not overloaded, or pass a larger timeout",
                ) from exc
            raise ModelfleetError(
                f"cannot reach {self.url}: {exc or type(exc).__name__}",
                hint="check the URL and that the server runs",
            ) from exc

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._check(self._request(method, path, **kwargs))

    def summary(self) -> dict[str, Any]:
        """``GET /monitor/summary``: per model rates, latency, cache, drift and accuracy."""
        doc: dict[str, Any] = self._send("GET", "/monitor/summary").json()
        return doc

    def feedback(self, name: str, request_ids: list[str], labels: list[Any]) -> dict[str, Any]:
        """Send true labels for answered requests (one label, or one list per row, per id).

        Returns what was accepted and the model's live accuracy after it.
        """
        body = {"request_ids": list(request_ids), "labels": _plain(labels)}
        doc: dict[str, Any] = self._send("POST", f"/v2/models/{name}/feedback", json=body).json()
        return doc

    def reload(self, name: str | None = None) -> Any:
        """Ask the server to re-resolve a model (or all); needs an ``admin`` token if set."""
        path = f"/v2/repository/models/{name}/load" if name else "/admin/reload"
        return self._send("POST", path).json()

    def _named(self, name: str, data: Any) -> dict[str, np.ndarray[Any, Any]]:
        if type(data).__name__ == "DataFrame" or isinstance(data, dict):
            return to_named_arrays(data)
        if name not in self._input_names:
            self._input_names[name] = [t["name"] for t in self.metadata(name)["inputs"]]
        names = self._input_names[name]
        if len(names) != 1:
            raise ServingError(
                f"model {name!r} takes {len(names)} inputs; pass a dict or a DataFrame",
                hint=f"inputs: {', '.join(names)}",
            )
        return {names[0]: np.asarray(data)}

    def predict(
        self,
        name: str,
        data: Any,
        *,
        version: str | None = None,
        outputs: list[str] | None = None,
        priority: int | None = None,
        timeout_ms: float | None = None,
        cache: bool = True,
        request_id: str | None = None,
    ) -> dict[str, np.ndarray[Any, Any]]:
        """Run ``data`` (array, DataFrame or dict of arrays) through a served model.

        The request's id (``request_id`` or one the server picks) is in
        :attr:`last_request_id`; pass it to :meth:`feedback` once the true labels are known.
        """
        inputs = {k: _wire_ready(v) for k, v in self._named(name, data).items()}
        parameters: dict[str, Any] = {}
        if priority is not None:
            parameters["priority"] = priority
        if timeout_ms is not None:
            parameters["timeout"] = int(timeout_ms * 1000)
        body, header_length = encode_request(
            inputs, binary=self.binary, outputs=outputs, parameters=parameters
        )
        headers = {
            "content-type": "application/octet-stream" if header_length else "application/json"
        }
        if header_length is not None:
            headers[HEADER_LENGTH] = str(header_length)
        if not cache:
            headers["cache-control"] = "no-cache"
        if request_id is not None:
            headers["x-request-id"] = request_id
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
        response = self._send("POST", path, content=body, headers=headers)
        self.last_request_id = response.headers.get("x-request-id")
        length = response.headers.get(HEADER_LENGTH)
        _, result = decode_response(response.content, int(length) if length else None)
        return result


def _wire_ready(array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """An array both encodings can send: numpy strings as objects, numbers in native order.

    orjson refuses non-native byte order, and the binary encoding sends raw bytes the server
    reads as little-endian, so a big-endian array (from a file, say) is converted first.
    """
    if array.dtype.kind == "U":
        return array.astype(object)
    if not array.dtype.isnative:
        return array.astype(array.dtype.newbyteorder("="))
    return array


def _plain(value: Any) -> Any:
    """Labels as JSON values: numpy scalars and arrays, at any depth, become plain values."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
