"""Running the CLI in-process the way a test reads it: exit code, stdout, stderr."""

from __future__ import annotations

import pytest

from modelfleet.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``modelfleet ARGS…``; what it printed, captured."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err
