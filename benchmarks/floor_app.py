"""The HTTP floor: a bare ASGI app that answers every request with a fixed V2 JSON body.

Served by the same stack as modelfleet (uvicorn, uvloop, httptools, one process), it is
what no Python server on this stack can beat: reading the request, writing a response.
It reads the whole body, as a real server must.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

_BODY = (
    b'{"model_name":"rf","model_version":"1","outputs":[{"name":"label","datatype":"INT64",'
    b'"shape":[1],"data":[1]},{"name":"probabilities","datatype":"FP32","shape":[1,2],'
    b'"data":[0.25,0.75]}]}'
)
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})
