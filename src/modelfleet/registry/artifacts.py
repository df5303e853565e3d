"""Artifact store: content-addressed files (sha256) on any fsspec filesystem, written atomically.

A file becomes visible under its final key only once it is whole (fsspec transactions: a
temporary file renamed on the local disk, a multipart upload completed on S3), and every
read checks the bytes against the digest recorded in the registry. :meth:`list_files` and
:meth:`delete` are what the registry's garbage collection works with.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
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
# Where a local put writes before its rename; a killed writer leaves the file behind.
TEMP_PREFIX = ".incoming-"
_BLOB_KEY = re.compile(r"sha256/([0-9a-f]{2})/(\1[0-9a-f]{62})")
# fsspec filesystems name a file's last change differently: local, S3, GCS/Azure, memory.
_MODIFIED_FIELDS = ("mtime", "LastModified", "last_modified", "updated", "created")


@dataclass(frozen=True, slots=True)
class StoredArtifact:
    """Where a put landed: the store key, its full URI, digest and size."""

    key: str
    uri: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file found in the store: its key, size and last change (None if the store hides it)."""

    key: str
    size: int
    modified: float | None

    @property
    def temporary(self) -> bool:
        """A write's temporary file, never a finished artifact."""
        return self.key.rsplit("/", 1)[-1].startswith(TEMP_PREFIX)

    @property
    def sha256(self) -> str | None:
        """The digest a finished artifact is stored under, None for any other file."""
        match = _BLOB_KEY.fullmatch(self.key)
        return match.group(2) if match else None


@dataclass(frozen=True, slots=True)
class Garbage:
    """A file nothing references: an ``orphan`` artifact or a ``temporary`` write's leftover."""

    key: str
    kind: str
    size: int
    age_s: float


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

    def list_files(self) -> Iterator[StoredFile]:
        """Every file under the store's ``sha256/`` folder, temporary ones included."""
        ...

    def delete(self, key: str) -> None:
        """Remove the file under ``key``; a file already gone is not an error."""
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
        if self._holds(path, sha, len(data)):
            self._touch(path)
        else:
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

    def _touch(self, path: str) -> None:
        """Mark reused bytes as fresh: garbage collection spares unreferenced files only
        while they are young, and these may be an orphan a registration now refers to.
        Object stores cannot change a modification time; see ``collect_garbage``."""
        if self._local:
            try:
                os.utime(path)
            except OSError as exc:
                logger.debug("could not refresh %s: %s", path, exc)

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

    def list_files(self) -> Iterator[StoredFile]:
        """Every file under ``sha256/``, with its size and modification time."""
        try:
            found = self._fs.find(self._path("sha256"), detail=True, withdirs=False)
        except FileNotFoundError:
            return
        prefix = f"{self._root}/"
        for path, info in sorted(found.items()):
            name = str(info.get("name", path))
            if info.get("type", "file") == "file" and name.startswith(prefix):
                yield StoredFile(name[len(prefix) :], int(info.get("size") or 0), _modified(info))

    def delete(self, key: str) -> None:
        """Remove the file under ``key`` (already gone is fine: two collectors may race)."""
        try:
            self._fs.rm_file(self._path(key))
        except FileNotFoundError:
            return
        logger.debug("deleted %s", self.uri_for(key))


def _modified(info: dict[str, Any]) -> float | None:
    """The listing's last-change time as epoch seconds, whichever field the store uses."""
    for field in _MODIFIED_FIELDS:
        value = info.get(field)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def _protocols(fs: Any) -> set[str]:
    protocol = fs.protocol
    return {protocol} if isinstance(protocol, str) else set(protocol)


def open_artifact_store(url: str, **storage_options: Any) -> ArtifactStore:
    """Open the artifact store at ``url`` (a folder or any fsspec URL)."""
    return FsspecArtifactStore(url, **storage_options)
