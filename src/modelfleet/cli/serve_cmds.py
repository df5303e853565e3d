"""Serving commands: serve, reload, token."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import typer
from pydantic import BaseModel, ValidationError

from modelfleet.cli.context import state
from modelfleet.cli.output import console, emit_json
from modelfleet.errors import ConfigError

# Mounted without a name by ``cli.app``: these commands sit at the top of ``modelfleet``.
app = typer.Typer()

# A token label stays one shell word and one field of ``name:sha256:scopes``.
_TOKEN_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
_LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
# Where each serve flag lands in a model's or the server's config, to name it in an error.
_FLAGS = {
    ("variant",): "--variant",
    ("batching", "max_batch_rows"): "--max-batch-rows",
    ("batching", "max_wait_ms"): "--max-wait-ms",
    ("cache", "backend"): "--cache",
    ("server", "host"): "--host",
    ("server", "port"): "--port",
    ("server", "workers"): "--workers",
}


def _literals(annotation: Any) -> list[str]:
    if get_origin(annotation) is Literal:
        return [str(arg) for arg in get_args(annotation)]
    return [value for arg in get_args(annotation) for value in _literals(arg)]


def _allowed(model: type[BaseModel], loc: tuple[str, ...]) -> str | None:
    """What the field at ``loc`` accepts, read from its declaration: choices or bounds."""
    for part in loc[:-1]:
        inner = model.model_fields[part].annotation if part in model.model_fields else None
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return None
        model = inner
    field = model.model_fields.get(loc[-1]) if loc else None
    if field is None:
        return None
    choices = _literals(field.annotation)
    if choices:
        return f"use one of {', '.join(choices)}"
    bounds = {
        k: getattr(m, k) for m in field.metadata for k in ("ge", "gt", "le", "lt") if hasattr(m, k)
    }
    if "ge" in bounds and "le" in bounds:
        return f"use a value from {bounds['ge']} to {bounds['le']}"
    words = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}
    said = " and ".join(f"{words[k]} {v}" for k, v in bounds.items())
    return f"use a value {said}" if said else None


def _option_error(exc: ValidationError, model: type[BaseModel]) -> ConfigError:
    """The first invalid serve option, named by its flag, with the values it takes."""
    error = exc.errors()[0]
    loc = tuple(str(part) for part in error["loc"])
    if loc[:1] == ("models",):  # a model of the merged config: its own fields
        from modelfleet.serving import ModelConfig

        loc, model = loc[2:], ModelConfig
    flag = _FLAGS.get(loc, ".".join(loc) or "serve option")
    return ConfigError(
        f"invalid {flag} {error['input']!r}", hint=_allowed(model, loc) or error["msg"]
    )


@app.command()
def serve(
    ctx: typer.Context,
    refs: Annotated[
        list[str] | None, typer.Argument(help="models: name, name:3, name@prod or a .onnx file")
    ] = None,
    host: Annotated[str | None, typer.Option(help="address to bind [default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="port [default: 8080]")] = None,
    workers: Annotated[int | None, typer.Option(help="processes behind the port")] = None,
    variant: Annotated[
        str | None, typer.Option(help="serve the fp32, fp16 or int8 variant of the REFs")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="serve config YAML")] = None,
    cache: Annotated[
        str | None, typer.Option(help="cache backend for the REFs: memory or redis://…")
    ] = None,
    max_batch_rows: Annotated[int | None, typer.Option(help="rows per ONNX call")] = None,
    max_wait_ms: Annotated[float | None, typer.Option(help="extra wait to fill a batch")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Serve models over the V2 protocol and KServe v1 (blocks until SIGTERM)."""
    from modelfleet.serving import (
        ModelConfig,
        ServeConfig,
        load_serve_config,
        parse_tokens,
        run_server,
    )

    if log_level.lower() not in _LOG_LEVELS:
        raise ConfigError(
            f"invalid --log-level {log_level!r}", hint=f"use one of {', '.join(_LOG_LEVELS)}"
        )
    base = load_serve_config(config)
    models = list(base.models)
    for ref in refs or []:
        batching: dict[str, object] = {}
        if max_batch_rows is not None:
            batching["max_batch_rows"] = max_batch_rows
        if max_wait_ms is not None:
            batching["max_wait_ms"] = max_wait_ms
        raw = {
            "ref": ref,
            "variant": variant,
            "batching": batching,
            "cache": {"backend": cache} if cache else {},
        }
        try:
            models.append(ModelConfig.model_validate(raw))
        except ValidationError as exc:
            raise _option_error(exc, ModelConfig) from None
    if not models:
        raise ConfigError("nothing to serve", hint="give a model reference or --config FILE")
    server_updates: dict[str, object] = {
        k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None
    }
    env_tokens = os.environ.get("MODELFLEET_SERVE_TOKENS")
    if env_tokens:
        server_updates["tokens"] = (*base.server.tokens, *parse_tokens(env_tokens))
    serve_config = base.model_copy(
        update={"models": tuple(models), "server": base.server.model_copy(update=server_updates)}
    )
    try:  # model_copy does not validate: re-check the merged values
        ServeConfig.model_validate(serve_config.model_dump())
    except ValidationError as exc:
        raise _option_error(exc, ServeConfig) from None
    # The CLI's root logger shows warnings only unless -v; the server's own notices (a drain
    # starting and ending) should show at the level chosen for the server. The hot-swap
    # events log through uvicorn's logger, which has its own handler and does not propagate.
    logging.getLogger("modelfleet.serving").setLevel(log_level.upper())
    run_server(serve_config, state(ctx).settings, log_level=log_level.lower())


@app.command()
def reload(
    url: Annotated[str, typer.Argument(help="server URL, e.g. http://127.0.0.1:8080")],
    name: Annotated[str | None, typer.Argument(help="model to reload (default: all)")] = None,
    token: Annotated[
        str | None, typer.Option(envvar="MODELFLEET_TOKEN", help="admin bearer token")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Make a running server re-resolve its models now (hot swap if a stage moved)."""
    from modelfleet.client import Client

    with Client(url, token=token) as client:
        result = client.reload(name)
    statuses = result if isinstance(result, list) else [result]
    if as_json:
        emit_json(statuses)
        return
    for status in statuses:
        reason = f" ({status['reason']})" if status.get("reason") else ""
        console.print(
            f"{status['name']}: version {status['version']} {status['state']}{reason}", markup=False
        )


@app.command()
def token(
    name: Annotated[str, typer.Option(help="a label for the token")] = "client",
    scopes: Annotated[
        str, typer.Option(help="scopes joined by +: infer, feedback, admin (e.g. infer+feedback)")
    ] = "infer",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """Create a bearer token; the server is configured with its sha256 only."""
    from modelfleet.serving import new_token, parse_tokens

    if not _TOKEN_NAME.fullmatch(name):
        raise ConfigError(
            f"invalid token name {name!r}",
            hint="use 1-100 letters, digits, '.', '_' or '-'",
        )
    value, digest = new_token()
    entry = f"{name}:{digest}:{scopes}"
    try:  # the server reads this entry: refuse what it would not read back as given
        parsed = parse_tokens(entry)
    except ConfigError:
        parsed = ()
    if len(parsed) != 1 or "+".join(parsed[0].scopes) != scopes:
        raise ConfigError(
            f"invalid token scopes {scopes!r}",
            hint="join infer, feedback and admin with + (e.g. infer+feedback)",
        )
    if as_json:
        shown = {"name": name, "scopes": list(parsed[0].scopes), "token": value, "sha256": digest}
        emit_json({**shown, "entry": entry})
        return
    # Never wrapped: a piped console is 80 columns wide, and a line broken inside the
    # digest would configure a token nobody holds.
    console.print(f"token (give to the client, shown once): {value}", soft_wrap=True, markup=False)
    console.print(f"server entry: MODELFLEET_SERVE_TOKENS={entry}", soft_wrap=True, markup=False)
