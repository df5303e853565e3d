"""Artifact store: content-addressed files (sha256) on any fsspec filesystem, written atomically.

A file becomes visible under its final key only once it is whole (fsspec transactions: a
temporary file renamed on the local disk, a multipart upload completed on S3), and every
read checks the bytes against the digest recorded in the registry.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import fsspec

from modelfleet.errors import (
    ArtifactCorruptedError,
    ArtifactNotFoundError,
    ConfigError,
    MissingDependencyError,
)

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class StoredArtifact:
    """Where a put landed: the store key, its full URI, digest and size."""

    key: str
    uri: str
    sha256: str
    size: int


class ArtifactStore(Protocol):
    """Content-addressed blob storage."""

    url: str

    def put_bytes(self, data: bytes) -> StoredArtifact:
        """Store ``data`` under its sha256; storing the same bytes twice is a no-op."""
        ...

    def get_bytes(self, key: str, sha256: str) -> bytes:
        """Return the bytes under ``key``, verified against ``sha256``."""
        ...

    def fetch(self, key: str, sha256: str, dest: Path) -> Path:
        """Copy the artifact to a local file, verified, and return its path."""
        ...

    def uri_for(self, key: str) -> str:
        """Full location of ``key``."""
        ...


def digest_key(sha256: str) -> str:
    """The store key of a digest: ``sha256/ab/abcdef…``."""
    return f"sha256/{sha256[:2]}/{sha256}"


class FsspecArtifactStore:
    """An :class:`ArtifactStore` on any fsspec URL: a local folder, ``s3://bucket/prefix`` …"""

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.url = url.rstrip("/")
        try:
            self._fs, self._root = fsspec.core.url_to_fs(self.url, **storage_options)
        except ImportError as exc:
            protocol = self.url.split("://", 1)[0]
            raise MissingDependencyError(
                exc.name or protocol, "s3", purpose=f"use the {protocol}:// artifact store"
            ) from exc
        except ValueError as exc:
            raise ConfigError(
                f"unsupported artifact store URL {url!r}: {exc}",
                hint="use a folder path or an fsspec URL such as s3://bucket/prefix",
            ) from exc
        self._local = "file" in _protocols(self._fs)
        if self._local:
            self._fs.makedirs(self._root, exist_ok=True)

    def _path(self, key: str) -> str:
        return f"{self._root}/{key}"

    def uri_for(self, key: str) -> str:
        """Full location of ``key``."""
        return f"{self.url}/{key}"

    def put_bytes(self, data: bytes) -> StoredArtifact:
        """Store ``data`` under its sha256, atomically; identical bytes are stored once."""
        sha = hashlib.sha256(data).hexdigest()
        key = digest_key(sha)
        path = self._path(key)
        if not self._holds(path, sha, len(data)):
            if self._local:
                self._put_local(path, data)
            else:
                # Object stores publish an object only when its upload completes; inside a
                # transaction fsspec defers that completion until the block exits cleanly.
                with self._fs.transaction, self._fs.open(path, "wb") as f:
                    f.write(data)
            logger.debug("stored artifact %s (%d bytes)", key, len(data))
        return StoredArtifact(key=key, uri=self.uri_for(key), sha256=sha, size=len(data))

    def _holds(self, path: str, sha256: str, size: int) -> bool:
        """Whether ``path`` already holds these bytes. A damaged copy (the error for it tells
        users to register the model again) is replaced instead of kept."""
        try:
            if self._fs.size(path) != size:
                return False
            return hashlib.sha256(self._fs.cat_file(path)).hexdigest() == sha256
        except FileNotFoundError:
            return False

    def _put_local(self, path: str, data: bytes) -> None:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get_bytes(self, key: str, sha256: str) -> bytes:
        """Return the artifact's bytes after checking their sha256."""
        path = self._path(key)
        try:
            data: bytes = self._fs.cat_file(path)
        except FileNotFoundError as exc:
            raise ArtifactNotFoundError(self.uri_for(key)) from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ArtifactCorruptedError(self.uri_for(key), expected=sha256, actual=actual)
        return data

    def fetch(self, key: str, sha256: str, dest: Path) -> Path:
        """Stream the artifact into ``dest`` (replaced only when the digest matches)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".fetch-")
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, self._fs.open(self._path(key), "rb") as src:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha256:
                raise ArtifactCorruptedError(
                    self.uri_for(key), expected=sha256, actual=digest.hexdigest()
                )
            os.replace(tmp, dest)
        except FileNotFoundError as exc:
            raise ArtifactNotFoundError(self.uri_for(key)) from exc
        finally:
            Path(tmp).unlink(missing_ok=True)
        return dest


def _protocols(fs: Any) -> set[str]:
    protocol = fs.protocol
    return {protocol} if isinstance(protocol, str) else set(protocol)


def open_artifact_store(url: str, **storage_options: Any) -> ArtifactStore:
    """Open the artifact store at ``url`` (a folder or any fsspec URL)."""
    return FsspecArtifactStore(url, **storage_options)
