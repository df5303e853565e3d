"""``python -m modelfleet.serving``: the server's entry point in images.

It imports only the serving stack (no registry, no CLI libraries), so an image carries
numpy, ONNX Runtime and the ASGI stack and nothing else.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from modelfleet.errors import ModelfleetError
from modelfleet.serving.server import run_server
from modelfleet.serving.settings import load_serve_config


def main(argv: list[str] | None = None) -> int:
    """Parse flags, load the serve config and serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m modelfleet.serving", description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="serve config YAML")
    parser.add_argument("--host", help="address to bind (overrides the config)")
    parser.add_argument("--port", type=int, help="port (overrides the config)")
    parser.add_argument("--log-level", default="info", help="debug, info, warning")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_serve_config(args.config)
        updates = {k: v for k, v in {"host": args.host, "port": args.port}.items() if v}
        config = config.model_copy(update={"server": config.server.model_copy(update=updates)})
        run_server(config, None, log_level=args.log_level)
    except ModelfleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
