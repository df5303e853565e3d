"""A local base image for machines without a registry: Debian minbase plus python3.

``debootstrap --variant=minbase`` builds a root filesystem from the Debian mirror the host
already uses; docs, manuals, locales and apt caches are removed, and the tree is imported
into podman (or docker) as ``localhost/modelfleet-base:<suite>``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from modelfleet.build.engines import ImageEngine, ImageInfo
from modelfleet.errors import BuildError

logger = logging.getLogger(__name__)

_TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "var/cache/apt", "var/lib/apt/lists")


def _empty(folder: Path, keep: set[str] | None = None) -> None:
    """Remove everything in ``folder`` (links are unlinked, never followed)."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for child in folder.iterdir():
        if keep and child.name in keep:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def debian_mirror() -> str:
    """The Debian mirror apt is configured with (deb822 or one-line sources)."""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in re.finditer(
            r"(?:URIs:\s*|^deb\s+(?:\[[^\]]*\]\s+)?)(\S+/debian)/?\s", text, re.M
        ):
            return match.group(1)
    return "http://deb.debian.org/debian"


def make_base_image(
    engine: ImageEngine,
    *,
    suite: str = "bookworm",
    tag: str | None = None,
    mirror: str | None = None,
) -> ImageInfo:
    """Debootstrap a minimal Debian with python3 and import it as an image."""
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise BuildError("debootstrap is not installed", hint="apt-get install debootstrap")
    if os.geteuid() != 0:
        raise BuildError("debootstrap needs root", hint="run modelfleet base-image as root")
    tag = tag or f"localhost/modelfleet-base:{suite}"
    with tempfile.TemporaryDirectory(prefix="modelfleet-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        # binutils lets the image build strip its shared libraries (the install stage only:
        # the final image copies the stripped files, not the tools).
        argv = [
            debootstrap,
            "--variant=minbase",
            "--include=python3,binutils",
            suite,
            str(root),
            mirror or debian_mirror(),
        ]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
        if result.returncode != 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-6:])
            raise BuildError(
                f"debootstrap failed:\n{tail}", hint="check the Debian mirror is reachable"
            )
        for rel in _TRIM:
            _empty(root / rel)
        _empty(root / "usr/share/locale", keep={"locale.alias"})
        archive = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(archive), "."], check=True)
        binary = shutil.which(engine.name)
        if binary is None:
            raise BuildError(f"{engine.name} is not installed")
        subprocess.run(
            [binary, "import", "--change", 'CMD ["/usr/bin/python3"]', str(archive), tag],
            check=True,
            capture_output=True,
        )
    return engine.inspect(tag)
