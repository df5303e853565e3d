"""A pipeline file as a trainer image carries it: name, bytes, digest, path, tag, torch.

The submitting side (``jobs submit``) and the building side (``build --trainer``) both read
the file through :class:`PipelineFile`, so they agree on the image's tag and the digest the
pod checks. Whether the image needs torch is read from the file's imports with ``ast``:
nothing of the user's code runs to decide it.
"""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from modelfleet.build.context import image_component
from modelfleet.errors import BuildError

PIPELINE_DIR = "/opt/modelfleet/pipeline"
# The name travels into a Containerfile COPY and a pod's argv: plain characters only.
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.py")


def _names_torch(module: str | None) -> bool:
    return module is not None and (module == "torch" or module.startswith("torch."))


def _imported_modules(tree: ast.AST) -> list[str | None]:
    """Every absolute module an import statement or an import call names, anywhere."""
    found: list[str | None] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Call) and node.args:
            callee = node.func
            name = callee.attr if isinstance(callee, ast.Attribute) else getattr(callee, "id", "")
            first = node.args[0]
            if name in {"import_module", "__import__"} and isinstance(first, ast.Constant):
                found.append(first.value if isinstance(first.value, str) else None)
    return found


def imports_torch(source: str | bytes, filename: str = "<pipeline>") -> bool:
    """Whether a pipeline imports torch: at the top, inside a function, or by name."""
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as exc:
        raise BuildError(
            f"{filename} is not valid Python (line {exc.lineno}: {exc.msg})",
            hint=f"fix it; 'modelfleet pipeline run {filename}' runs it here",
        ) from exc
    return any(_names_torch(module) for module in _imported_modules(tree))


@dataclass(frozen=True)
class PipelineFile:
    """A pipeline file as a trainer image carries it: its bytes, digest and place in the image."""

    name: str
    source: bytes

    @classmethod
    def read(cls, path: Path) -> PipelineFile:
        """Read ``path`` once; everything about the image follows from these bytes."""
        if not _FILE_NAME.fullmatch(path.name):
            raise BuildError(
                f"pipeline file name {path.name!r} cannot go into an image",
                hint="name it with letters, digits, '_', '-' or '.', ending in .py",
            )
        try:
            return cls(path.name, path.read_bytes())
        except OSError as exc:
            raise BuildError(
                f"cannot read the pipeline file {path}: {exc.strerror}", hint="check the path"
            ) from exc

    @property
    def sha256(self) -> str:
        """Hex sha256 of the file's bytes."""
        return hashlib.sha256(self.source).hexdigest()

    @property
    def in_image(self) -> str:
        """Where the image keeps the file (the pod's runner is given this path)."""
        return f"{PIPELINE_DIR}/{self.name}"

    def tag(self, repository: str = "localhost/modelfleet") -> str:
        """``<repository>/trainer-<stem>:<12 hex of the sha256>``: the default trainer tag."""
        stem = self.name.removesuffix(".py")
        return f"{repository}/trainer-{image_component(stem)}:{self.sha256[:12]}"

    @property
    def imports_torch(self) -> bool:
        """Whether the pipeline imports torch anywhere in the file."""
        return imports_torch(self.source, self.name)
