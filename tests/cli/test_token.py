"""``modelfleet token``: whole lines when piped, JSON for scripts, bad labels refused."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from modelfleet.cli import main
from modelfleet.serving import parse_tokens


def token_command(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``modelfleet token`` with stdout piped, as a script or ``| tee`` would."""
    env = {k: v for k, v in os.environ.items() if k not in {"COLUMNS", "LINES"}}
    env.pop("MODELFLEET_SERVE_TOKENS", None)
    return subprocess.run(
        [sys.executable, "-m", "modelfleet", "token", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_piped_output_keeps_the_server_entry_on_one_line() -> None:
    done = token_command("--name", "batch-scoring-service", "--scopes", "infer+admin")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    value = lines[0].rsplit(" ", 1)[1]
    assert value.startswith("mf_")
    entry = next(line for line in lines if "MODELFLEET_SERVE_TOKENS=" in line)
    setting = entry.split("MODELFLEET_SERVE_TOKENS=", 1)[1]
    (token,) = parse_tokens(setting)
    assert token.name == "batch-scoring-service"
    assert token.scopes == ("infer", "admin")
    assert token.sha256 == hashlib.sha256(value.encode()).hexdigest()


def test_json_gives_the_token_its_digest_and_the_server_entry() -> None:
    done = token_command("--name", "ci", "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert set(shown) == {"name", "scopes", "token", "sha256", "entry"}
    assert shown["name"] == "ci"
    assert shown["scopes"] == ["infer"]
    assert shown["sha256"] == hashlib.sha256(shown["token"].encode()).hexdigest()
    assert shown["entry"] == f"ci:{shown['sha256']}:infer"
    assert parse_tokens(shown["entry"])[0].sha256 == shown["sha256"]


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--name", "a:b"),
        ("--name", "a,b"),
        ("--name", "two words"),
        ("--name", ""),
        ("--scopes", "root"),
        ("--scopes", "infer,admin"),
        ("--scopes", ""),
    ],
)
def test_a_label_or_scope_the_server_would_not_read_is_refused(
    flag: str, value: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Wide: how the CLI wraps its error line when piped is the error printer's business.
    monkeypatch.setenv("COLUMNS", "400")
    code = main(["token", flag, value])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err.startswith("error: invalid token ")
    assert len(err.strip().splitlines()) == 1
    assert repr(value) in err
