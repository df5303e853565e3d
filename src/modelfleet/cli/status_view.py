"""``modelfleet status URL``: a live terminal view of a running server's ``/monitor/summary``."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, TypeGuard

import httpx
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from modelfleet.cli.output import console, emit_json
from modelfleet.errors import ConfigError, ModelfleetError

SUMMARY_PATH = "/monitor/summary"
TIMEOUT_S = 5.0
# The defaults of 'modelfleet monitor rules': a feature's PSI, and the share of 5xx answers.
DRIFT_ALERT = 0.2
ERROR_ALERT = 0.01
DASH = "-"


def summary_url(url: str) -> str:
    """The summary endpoint of the server at ``url`` (its base URL or the endpoint itself)."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(
            f"status takes a server URL starting with http:// or https://, got {url!r}",
            hint="e.g. 'modelfleet status http://127.0.0.1:8080'; without a URL it lists "
            "the cluster's deployments",
        )
    base = url.rstrip("/")
    return base if base.endswith(SUMMARY_PATH) else base + SUMMARY_PATH


def _refused(url: str, said: str, token: bool) -> ModelfleetError:
    if token:  # the server's message says why (unknown token, or a scope it lacks)
        return ModelfleetError(f"{url} refused the token: {said}")
    return ModelfleetError(
        f"{url} needs a bearer token", hint="pass --token or set MODELFLEET_TOKEN"
    )


def fetch_summary(client: httpx.Client, url: str) -> dict[str, Any]:
    """``GET`` the summary at ``url``; every failure becomes one clear :class:`ModelfleetError`."""
    try:
        response = client.get(url)
    except httpx.TimeoutException as exc:
        raise ModelfleetError(
            f"no answer from {url} within {TIMEOUT_S:g} s", hint="check the server's health"
        ) from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise ModelfleetError(
            f"cannot reach {url}: {exc}",
            hint="check the URL and that 'modelfleet serve' is running there",
        ) from exc
    try:
        doc = response.json()
    except ValueError:
        doc = None
    said = doc.get("error") if isinstance(doc, dict) else None
    status = response.status_code
    if status in (401, 403):
        raise _refused(url, str(said or response.reason_phrase), "authorization" in client.headers)
    if status >= 400 and isinstance(said, str):
        raise ModelfleetError(f"{url} answered {status}: {said}")
    server = doc.get("server") if isinstance(doc, dict) else None
    if not (isinstance(server, dict) and server.get("name") == "modelfleet"):
        raise ModelfleetError(
            f"{url} did not answer with a modelfleet summary (HTTP {status})",
            hint="give the base URL of 'modelfleet serve', e.g. http://127.0.0.1:8080",
        )
    summary: dict[str, Any] = doc
    if not isinstance(summary.get("models"), list):  # pragma: no cover - a server's own bug
        raise ModelfleetError(f"{url} answered a summary without models")
    return summary


def _given(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and math.isfinite(value)


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if _given(value) else DASH


def _ms(value: Any) -> str:
    if not _given(value):
        return DASH
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _whole(value: Any) -> str:
    return f"{value:.0f}" if _given(value) else DASH


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h {m:02d}m {s:02d}s" if hours else f"{m}m {s:02d}s"


def _state(m: dict[str, Any]) -> Text:
    style = {"ready": "green", "loading": "yellow", "failed": "red"}.get(m.get("state", ""), "")
    text = Text(str(m.get("state", DASH)), style=style)
    if m.get("reason"):
        text.append(f" ({m['reason']})", style="red")
    return text


def _errors(m: dict[str, Any]) -> Text:
    ratio = m.get("error_ratio")
    style = "bold red" if _given(ratio) and ratio > ERROR_ALERT else ""
    text = Text(f"{_pct(ratio)} 5xx", style=style)
    text.append(f" ({_whole(m.get('errors'))} in all), {_pct(m.get('rejected_ratio'))} 4xx")
    return text


def _cache(m: dict[str, Any]) -> Text:
    text = Text(str(m.get("cache", DASH)))
    if _given(m.get("cache_hit_ratio")):
        text.append(f", {_pct(m['cache_hit_ratio'])} hits")
    if m.get("cache_reason"):
        text.append(f" ({m['cache_reason']})", style="yellow")
    return text


def _drift(m: dict[str, Any]) -> Text:
    drift = m.get("drift") or {}
    if not drift.get("profile"):
        return Text("no training profile", style="dim")
    psi: dict[str, float] = drift.get("psi") or {}
    top = drift.get("max_psi")
    if not psi or not _given(top):
        return Text(f"waiting for rows ({drift.get('rows', 0)} so far)", style="dim")
    worst = max(psi, key=lambda f: psi[f])
    text = Text(f"PSI {top:.3f}", style="bold red" if top > DRIFT_ALERT else "")
    text.append(f" ({worst}), KS {drift.get('max_ks') or 0:.3f}")
    return text


def _accuracy(m: dict[str, Any]) -> Text:
    acc = m.get("accuracy") or {}
    registered = f"registered {_pct(acc.get('registered'))}"
    if not acc.get("classifier"):
        return Text(f"not a classifier, {registered}", style="dim")
    labelled = int(acc.get("labelled_requests") or 0) + int(acc.get("labelled_rows") or 0)
    if not labelled:  # the gauge reads 0 until the first label arrives
        return Text(f"live: no labels yet, {registered}")
    return Text(
        f"live {_pct(acc.get('live'))} ({acc.get('labelled_requests', 0)} labelled), {registered}"
    )


def _predictions(m: dict[str, Any]) -> Text:
    counts = sorted((m.get("predictions") or {}).items(), key=lambda kv: -kv[1])
    shown = "  ".join(f"{label}: {count:.0f}" for label, count in counts[:8])
    more = f"  (+{len(counts) - 8} classes)" if len(counts) > 8 else ""
    return Text(shown + more if counts else DASH)


_ROWS: tuple[tuple[str, Callable[[dict[str, Any]], Text | str]], ...] = (
    ("version", lambda m: f"{m.get('version') or DASH} {m.get('variant') or ''}".strip()),
    ("stages", lambda m: ", ".join(m.get("stages") or []) or DASH),
    ("state", _state),
    ("requests/s", lambda m: f"{m['rps']:.2f}" if _given(m.get("rps")) else DASH),
    ("requests", lambda m: _whole(m.get("requests"))),
    ("p50 / p99 ms", lambda m: f"{_ms(m.get('p50_ms'))} / {_ms(m.get('p99_ms'))}"),
    ("errors", _errors),
    ("cache", _cache),
    (
        "queue / in flight",
        lambda m: f"{_whole(m.get('queue_depth'))} / {_whole(m.get('inflight'))}",
    ),
    ("drift", _drift),
    ("accuracy", _accuracy),
    ("predictions", _predictions),
)


def render_summary(doc: dict[str, Any], url: str, problem: str | None = None) -> RenderableType:
    """The view of one summary: a header line and one column of figures per model."""
    server = doc["server"]
    head = Text.assemble(
        (url, "bold"),
        f"  modelfleet {server.get('version', '?')}, up {_duration(server.get('uptime_s', 0))}, "
        f"rates over the last {doc.get('window_s', 0):.0f} s",
    )
    models: list[dict[str, Any]] = doc["models"]
    parts: list[RenderableType] = [head]
    if problem:
        parts.append(Text(f"{problem} (showing the last figures)", style="bold red"))
    if not models:
        parts.append(Text("this server serves no model", style="dim"))
        return Group(*parts)
    # Names, labels and reasons come from users: Text cells are never read as rich markup.
    table = Table(show_header=True, header_style="bold")
    table.add_column("")
    for m in models:
        table.add_column(Text(str(m.get("name", "?")), style="bold"), overflow="fold")
    for label, cell in _ROWS:
        table.add_row(Text(label, style="dim"), *(_text(cell(m)) for m in models))
    parts.append(table)
    return Group(*parts)


def _text(value: Text | str) -> Text:
    return value if isinstance(value, Text) else Text(value)


def show_status(
    url: str,
    *,
    token: str | None,
    interval: float,
    once: bool,
    as_json: bool,
) -> None:
    """Print the server's figures once (``once``, ``as_json``) or refresh them until Ctrl-C."""
    endpoint = summary_url(url)
    headers = {"accept": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    with httpx.Client(headers=headers, timeout=TIMEOUT_S) as client:
        doc = fetch_summary(client, endpoint)
        if as_json:
            emit_json(doc)
            return
        if once:
            console.print(render_summary(doc, url))
            return
        with Live(render_summary(doc, url), console=console, auto_refresh=False) as live:
            try:
                while True:
                    time.sleep(interval)
                    problem = None
                    try:
                        doc = fetch_summary(client, endpoint)
                    except ModelfleetError as exc:  # keep watching through a restart
                        problem = str(exc)
                    live.update(render_summary(doc, url, problem), refresh=True)
            except KeyboardInterrupt:
                return
