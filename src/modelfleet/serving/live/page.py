"""The monitoring page at ``GET /``: one self-contained HTML document that polls the summary.

Everything is inline (no CDN, no font, no image), so the page works on an air-gapped cluster.
Its script reads ``monitor/summary`` (relative, so it also works behind a path prefix) every
two seconds, or every ``?interval=`` seconds, and draws the figures and sparklines of each
served model. Model names, class labels and feature names come from users: the script only
ever puts them in ``textContent`` and attributes. A Content-Security-Policy with the hashes
of the inline script and style forbids everything else (other scripts, inline event
handlers, any request to another origin), as a second line of defence.

The document, its style and its script are package data in ``assets/`` (``page.html``,
``page.css``, ``page.js``); this module only reads them and assembles the page.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from importlib import resources
from string import Template

# The package, not a path beside this file: the page must load the same way from a source
# tree, an installed wheel or a zip.
_ASSETS = "modelfleet.serving.live"


def _asset(name: str) -> str:
    return (resources.files(_ASSETS) / "assets" / name).read_text(encoding="utf-8")


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@functools.cache
def monitor_page() -> str:
    """The monitoring page (built once; it holds no server data, the script fetches it)."""
    style, script = _asset("page.css"), _asset("page.js")
    # The hashes are of the exact text placed between the tags, so an edited asset is
    # allowed and nothing else is: no 'unsafe-inline', no nonce to leak or reuse.
    policy = (
        "default-src 'none'; connect-src 'self'; img-src 'none'; base-uri 'none'; "
        f"form-action 'none'; script-src {_digest(script)}; style-src {_digest(style)}"
    )
    # substitute() fails on a missing or misspelt placeholder, and never rescans what it
    # puts in, so a '$' in the script or style stays as written.
    return Template(_asset("page.html")).substitute(policy=policy, style=style, script=script)
