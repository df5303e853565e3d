"""Serving commands: serve, reload, token."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

import typer

from modelfleet.cli.context import state
from modelfleet.cli.output import console, emit_json
from modelfleet.errors import ConfigError

# Mounted without a name by ``cli.app``: these commands sit at the top of ``modelfleet``.
app = typer.Typer()

# A token label stays one shell word and one field of ``name:sha256:scopes``.
_TOKEN_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


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
    from modelfleet.serving import ModelConfig, load_serve_config, parse_tokens, run_server

    base = load_serve_config(config)
    models = list(base.models)
    for ref in refs or []:
        batching: dict[str, object] = {}
        if max_batch_rows is not None:
            batching["max_batch_rows"] = max_batch_rows
        if max_wait_ms is not None:
            batching["max_wait_ms"] = max_wait_ms
        models.append(
            ModelConfig.model_validate(
                {
                    "ref": ref,
                    "variant": variant,
                    "batching": batching,
                    "cache": {"backend": cache} if cache else {},
                }
            )
        )
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
    type(serve_config).model_validate(serve_config.model_dump())  # re-check merged values
    run_server(serve_config, state(ctx).settings, log_level=log_level)


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
        console.print(f"{status['name']}: version {status['version']} {status['state']}{reason}")


@app.command()
def token(
    name: Annotated[str, typer.Option(help="a label for the token")] = "client",
    scopes: Annotated[str, typer.Option(help="infer, admin or infer+admin")] = "infer",
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
            f"invalid token scopes {scopes!r}", hint="use infer, admin or infer+admin"
        )
    if as_json:
        shown = {"name": name, "scopes": list(parsed[0].scopes), "token": value, "sha256": digest}
        emit_json({**shown, "entry": entry})
        return
    # Never wrapped: a piped console is 80 columns wide, and a line broken inside the
    # digest would configure a token nobody holds.
    console.print(f"token (give to the client, shown once): {value}", soft_wrap=True, markup=False)
    console.print(f"server entry: MODELFLEET_SERVE_TOKENS={entry}", soft_wrap=True, markup=False)
