"""Predictions by request id, true labels joined to them, and the live accuracy that follows.

Every answered request of a classifier is recorded as ``(model, request id, version, predicted
classes)`` in a SQLite file in the server's state directory. Worker processes of one server
share the file (WAL mode), so feedback may land on any of them. Feedback rows keep how many
rows of the request were right; live accuracy is computed over the most recent labelled
requests of a model version.

The store is bounded in bytes, not only rows (it may sit on a pod's small in-memory /tmp):
a request keeps at most ``max_recorded_rows`` classes (the watcher cuts them), every write
evicts the oldest records until the store fits ``max_bytes`` again, and pruning drops
predictions and feedback past their retention, a batch per transaction. Any backend of
:class:`PredictionStore` keeps that contract; the SQLite one measures its pages in use and
keeps the file and its WAL inside the budget.

All methods block: the server calls them on one dedicated thread.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson

from modelfleet.errors import InvalidInputError, UnknownRequestIdError
from modelfleet.signature import STRING, Arrays, Signature

ClassOf = Callable[[Arrays], np.ndarray[Any, Any] | None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    model TEXT NOT NULL,
    id TEXT NOT NULL,
    version TEXT NOT NULL,
    ts REAL NOT NULL,
    classes TEXT NOT NULL,
    rows INTEGER,
    PRIMARY KEY (model, id)
);
CREATE INDEX IF NOT EXISTS predictions_ts ON predictions (ts);
CREATE TABLE IF NOT EXISTS feedback (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    id TEXT NOT NULL,
    version TEXT NOT NULL,
    ts REAL NOT NULL,
    rows INTEGER NOT NULL,
    correct INTEGER NOT NULL,
    UNIQUE (model, id)
);
CREATE INDEX IF NOT EXISTS feedback_version ON feedback (model, version, seq);
CREATE INDEX IF NOT EXISTS feedback_ts ON feedback (ts);
"""
_LOOKUP_CHUNK = 500
_PRUNE_BATCH = 2000  # rows deleted per transaction: the WAL stays small, other workers write
_EVICT_BATCH = 256
# The oldest rows with their approximate size, and how to delete them: per table.
_PREDICTION_SIZES = (
    "SELECT rowid, length(classes) + length(id) + 48 FROM predictions ORDER BY ts LIMIT ?",
    "DELETE FROM predictions WHERE rowid IN ({}) "
    "RETURNING model, coalesce(rows, json_array_length(classes))",
)
_FEEDBACK_SIZES = (
    "SELECT seq, length(id) + length(model) + 64 FROM feedback ORDER BY ts LIMIT ?",
    "DELETE FROM feedback WHERE seq IN ({}) RETURNING model, rows",
)
# A prediction row is (model, id, version, ts, classes JSON, rows predicted).
PredictionRow = tuple[str, str, str, float, str, int]
MAX_ID_LENGTH = 128
# Ids travel back in the X-Request-Id header: printable ASCII survives every HTTP stack
# byte for byte; anything else is mangled (latin-1 vs UTF-8), stripped (outer spaces) or
# breaks the response (CR, LF, NUL). Refusing it keeps "the id you sent is the id you get".
_ID = re.compile(r"[!-~](?:[ -~]*[!-~])?")


def class_reader(signature: Signature) -> tuple[ClassOf | None, str]:
    """How to read predicted classes from a model's outputs, and the class kind.

    A 1-D integer or text output named like a label (``label``, ``output_label``, …) is
    taken as is; otherwise a single 2-D float output with several columns (scores,
    probabilities, logits) is read with argmax. Other models are not classifiers: they get
    no live accuracy (returns ``(None, "")``).
    """
    outputs = signature.outputs
    for spec in outputs:
        if "label" in spec.name.lower() and len(spec.shape) == 1:
            if spec.dtype == STRING:
                return _take(spec.name), "text"
            if np.dtype(spec.numpy_dtype).kind in "iu":
                return _take(spec.name), "int"
    floats = [s for s in outputs if s.dtype != STRING and np.dtype(s.numpy_dtype).kind == "f"]
    if len(outputs) == 1 and len(floats) == 1:
        spec = floats[0]
        if len(spec.shape) == 2 and (spec.shape[1] is None or spec.shape[1] > 1):
            name = spec.name
            return (lambda out: np.argmax(out[name], axis=1) if name in out else None), "int"
    return None, ""


def _take(name: str) -> ClassOf:
    return lambda out: out.get(name)


@dataclass(frozen=True)
class Accuracy:
    """Live accuracy of one model version over its most recent labelled requests."""

    value: float | None
    requests: int
    rows: int


@dataclass(frozen=True)
class FeedbackResult:
    """What one feedback call changed."""

    accepted: int
    rows: int
    correct: int
    per_version: dict[str, tuple[int, int]]  # version -> (rows, correct)


class PredictionStore(Protocol):
    """Where predictions wait for feedback: bounded by ``max_bytes`` in every backend.

    Writes evict the oldest records (predictions, then feedback, by age) until the store
    fits its budget again and return the predicted rows dropped per model; :meth:`prune`
    drops what is past retention.
    """

    max_bytes: int

    def add_predictions(self, rows: Sequence[PredictionRow]) -> dict[str, int]: ...
    def add_feedback(
        self, model: str, ids: Sequence[str], labels: Sequence[Any], kind: str
    ) -> FeedbackResult: ...
    def accuracy(self, model: str, version: str, window: int) -> Accuracy: ...
    def prune(self, now: float | None = None) -> int: ...
    def usage(self) -> int: ...
    def counts(self) -> dict[str, int]: ...
    def close(self) -> None: ...


class FeedbackStore:
    """The SQLite file of predictions and feedback (the :class:`PredictionStore` of one server)."""

    def __init__(
        self,
        path: Path,
        *,
        retention_s: float,
        max_predictions: int,
        max_bytes: int = 32 << 20,
        feedback_retention_s: float | None = None,
    ) -> None:
        self.path = path
        self.retention_s = retention_s
        self.feedback_retention_s = feedback_retention_s or retention_s
        self.max_predictions = max_predictions
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=10.0, check_same_thread=False)
        # Set before the first table: freed pages can then be given back to the file system.
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # Debian's SQLite zeroes every freed page: evicting 1 MB would write 1 MB to the WAL.
        self._db.execute("PRAGMA secure_delete=FAST")
        self._page = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        # An eighth of the budget for the WAL: checkpoint past it and truncate back to it.
        wal = max_bytes // 8
        self._db.execute(f"PRAGMA wal_autocheckpoint={max(16, wal // 2 // self._page)}")
        self._db.execute(f"PRAGMA journal_size_limit={wal // 2}")
        # Pages in use stay under three quarters of the budget; one write batch fits in the rest.
        self._data_limit = max_bytes * 3 // 4
        self._write_chunk = max(64 << 10, max_bytes // 32)
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(predictions)")}
        if "rows" not in columns:  # a file written before rows were counted
            self._db.execute("ALTER TABLE predictions ADD COLUMN rows INTEGER")
        with self._db:
            self._fit()
        self._shrink(vacuum=True)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def usage(self) -> int:
        """Bytes held: pages in use plus the WAL on disk."""
        wal = self.path.with_name(self.path.name + "-wal")
        return self._used() + (wal.stat().st_size if wal.exists() else 0)

    def _used(self) -> int:
        (pages,) = self._db.execute("PRAGMA page_count").fetchone()
        (free,) = self._db.execute("PRAGMA freelist_count").fetchone()
        return int(pages - free) * self._page

    def add_predictions(self, rows: Sequence[PredictionRow]) -> dict[str, int]:
        """Record predictions (a reused id keeps the newest); returns rows evicted per model.

        Written a budget slice per transaction, each making room by evicting the oldest
        records, so neither the file nor the WAL outgrows the budget on a burst.
        """
        evicted: dict[str, int] = {}
        start = 0
        while start < len(rows):
            end, size = start, 0
            while end < len(rows) and size < self._write_chunk:
                size += len(rows[end][4]) + len(rows[end][1]) + 64
                end += 1
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?, ?)",
                    rows[start:end],
                )
                for model, count in self._fit().items():
                    evicted[model] = evicted.get(model, 0) + count
            start = end
        self._shrink()
        return evicted

    def _fit(self) -> dict[str, int]:
        """Evict the oldest records until the pages in use fit the budget (in a transaction)."""
        evicted: dict[str, int] = {}
        for _ in range(10_000):  # bounded: every round deletes at least one row
            excess = self._used() - self._data_limit
            if excess <= 0:
                break
            predicted, labelled = self._db.execute(
                "SELECT (SELECT min(ts) FROM predictions), (SELECT min(ts) FROM feedback)"
            ).fetchone()
            if predicted is None and labelled is None:
                break
            table = (
                _FEEDBACK_SIZES
                if labelled is not None and (predicted is None or labelled < predicted)
                else _PREDICTION_SIZES
            )
            # The oldest rows that free about the excess (pages free once emptied: loop).
            keys, freed = [], 0
            for key, size in self._db.execute(table[0], (_EVICT_BATCH,)):
                keys.append(key)
                freed += size
                if freed >= excess:
                    break
            marks = ",".join("?" * len(keys))  # placeholders only; values are bound
            for model, rows in self._db.execute(table[1].format(marks), keys).fetchall():
                evicted[model] = evicted.get(model, 0) + int(rows)
        return evicted

    def _shrink(self, *, vacuum: bool = False) -> None:
        """Give free pages back when the file is over budget (VACUUM once for old files)."""
        (pages,) = self._db.execute("PRAGMA page_count").fetchone()
        if pages * self._page <= self._data_limit + self._write_chunk * 2:
            return
        (mode,) = self._db.execute("PRAGMA auto_vacuum").fetchone()
        if mode != 2 and vacuum:  # made before auto_vacuum was set: rebuild it once
            self._db.execute("VACUUM")
        else:
            self._db.execute("PRAGMA incremental_vacuum").fetchall()

    def prune(self, now: float | None = None) -> int:
        """Drop predictions and feedback past retention, and predictions beyond the row cap."""
        now = now or time.time()
        gone = self._batched(
            "DELETE FROM predictions WHERE rowid IN (SELECT rowid FROM predictions "
            "WHERE ts < ? LIMIT ?)",
            now - self.retention_s,
        )
        gone += self._batched(
            "DELETE FROM feedback WHERE seq IN (SELECT seq FROM feedback WHERE ts < ? LIMIT ?)",
            now - self.feedback_retention_s,
        )
        (count,) = self._db.execute("SELECT count(*) FROM predictions").fetchone()
        if count > self.max_predictions:
            (cutoff,) = self._db.execute(
                "SELECT ts FROM predictions ORDER BY ts LIMIT 1 OFFSET ?",
                (count - self.max_predictions,),
            ).fetchone()
            gone += self._batched(
                "DELETE FROM predictions WHERE rowid IN (SELECT rowid FROM predictions "
                "WHERE ts < ? LIMIT ?)",
                cutoff,
            )
        self._shrink()
        return gone

    def _batched(self, statement: str, cutoff: float) -> int:
        gone = 0
        while True:
            with self._db:
                count = self._db.execute(statement, (cutoff, _PRUNE_BATCH)).rowcount
            gone += count
            if count < _PRUNE_BATCH:
                return gone

    def _lookup(self, model: str, ids: Sequence[str]) -> Known:
        found: Known = {}
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            chunk = ids[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))  # placeholders only; values are bound
            query = (
                "SELECT id, version, classes, rows FROM predictions "  # noqa: S608
                f"WHERE model = ? AND id IN ({marks})"
            )
            for rid, version, classes, rows in self._db.execute(query, (model, *chunk)):
                predicted = orjson.loads(classes)
                found[rid] = (version, predicted, len(predicted) if rows is None else rows)
        return found

    def add_feedback(
        self, model: str, ids: Sequence[str], labels: Sequence[Any], kind: str
    ) -> FeedbackResult:
        """Join true labels to recorded predictions; all or nothing.

        A request whose classes were cut to the first rows is judged on those rows. Raises
        :class:`UnknownRequestIdError` (404) for ids never predicted (or pruned) and
        :class:`InvalidInputError` (400) for labels of the wrong type or count; nothing is
        written then.
        """
        known = self._lookup(model, list(dict.fromkeys(ids)))
        judged, result = judge(model, ids, labels, kind, known)
        now = time.time()
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO feedback (model, id, version, ts, rows, correct) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (model, rid, version, now, rows, correct)
                    for rid, version, rows, correct in judged
                ],
            )
            self._fit()
        return result

    def accuracy(self, model: str, version: str, window: int) -> Accuracy:
        """Accuracy over the last ``window`` labelled requests of a version (rows weighted)."""
        requests, rows, correct = self._db.execute(
            "SELECT count(*), coalesce(sum(rows), 0), coalesce(sum(correct), 0) FROM "
            "(SELECT rows, correct FROM feedback WHERE model = ? AND version = ? "
            "ORDER BY seq DESC LIMIT ?)",
            (model, version, window),
        ).fetchone()
        return Accuracy(correct / rows if rows else None, int(requests), int(rows))

    def counts(self) -> dict[str, int]:
        """Rows held, for status pages and tests."""
        (predictions,) = self._db.execute("SELECT count(*) FROM predictions").fetchone()
        (feedback,) = self._db.execute("SELECT count(*) FROM feedback").fetchone()
        return {"predictions": int(predictions), "feedback": int(feedback)}


# What a store writes per labelled request: (request id, version, rows judged, rows correct).
Judged = tuple[str, str, int, int]
# What a store looked up per request id: (version, predicted classes, rows predicted).
Known = dict[str, tuple[str, list[Any], int]]


def judge(
    model: str, ids: Sequence[str], labels: Sequence[Any], kind: str, known: Known
) -> tuple[list[Judged], FeedbackResult]:
    """Compare labels with the predictions every store looked up; nothing is written here.

    Raises :class:`UnknownRequestIdError` (404) for ids not in ``known`` and
    :class:`InvalidInputError` (400) for labels of the wrong type or count, so a store that
    calls this before writing writes all or nothing. A request whose classes were cut to its
    first rows is judged on those rows.
    """
    unknown = [rid for rid in ids if rid not in known]
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise UnknownRequestIdError(
            f"model {model!r} has no recorded prediction for request id {shown}{more}",
            hint="send the id from the prediction response (header X-Request-Id or the "
            "V2 'id'); predictions are kept for a limited time",
        )
    judged: list[Judged] = []
    per_version: dict[str, tuple[int, int]] = {}
    for index, (rid, given) in enumerate(zip(ids, labels, strict=True)):
        version, predicted, rows = known[rid]
        truth = _labels(given, rows, kind, index, rid)
        correct = sum(1 for p, t in zip(predicted, truth, strict=False) if p == t)
        judged.append((rid, version, len(predicted), correct))
        seen_rows, seen_correct = per_version.get(version, (0, 0))
        per_version[version] = (seen_rows + len(predicted), seen_correct + correct)
    total_rows = sum(rows for rows, _ in per_version.values())
    total_correct = sum(correct for _, correct in per_version.values())
    return judged, FeedbackResult(len(judged), total_rows, total_correct, per_version)


def _labels(given: Any, rows: int, kind: str, index: int, rid: str) -> list[Any]:
    values = given if isinstance(given, list) else [given]
    if len(values) != rows:
        raise InvalidInputError(
            f"labels[{index}] (request {rid!r}) has {len(values)} label(s), but that request "
            f"predicted {rows} row(s)",
            hint="send one label per row of the request, in order (a bare label for 1 row)",
        )
    for value in values:
        ok = (
            isinstance(value, str)
            if kind == "text"
            else isinstance(value, int) and not isinstance(value, bool)
        )
        if not ok:
            want = "text" if kind == "text" else "integer"
            raise InvalidInputError(
                f"labels[{index}] (request {rid!r}) holds {value!r}: this model's classes "
                f"are {want} labels",
            )
    return values


def check_request_id(rid: str) -> None:
    """A clear 400 unless ``rid`` is printable ASCII of at most ``MAX_ID_LENGTH`` characters."""
    if len(rid) > MAX_ID_LENGTH:
        raise InvalidInputError(
            f"request id has {len(rid)} characters, more than {MAX_ID_LENGTH}",
            hint="send a shorter id, or none and use the one the server returns",
        )
    if not _ID.fullmatch(rid):
        raise InvalidInputError(
            f"request id {rid!a} must be printable ASCII (no control characters, "
            "no leading or trailing space)",
            hint="send an ASCII id, or none and use the one the server returns",
        )


def parse_feedback(body: bytes) -> tuple[list[str], list[Any]]:
    """``{"request_ids": [...], "labels": [...]}`` → ids and labels, or a clear 400."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"feedback body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidInputError(_FEEDBACK_SHAPE)
    ids, labels = doc.get("request_ids"), doc.get("labels")
    if not isinstance(ids, list) or not isinstance(labels, list) or not ids:
        raise InvalidInputError(_FEEDBACK_SHAPE)
    if len(ids) != len(labels):
        raise InvalidInputError(
            f"feedback has {len(ids)} request_ids but {len(labels)} labels",
            hint="send one label (or one list of labels) per request id",
        )
    for rid in ids:
        if not isinstance(rid, str) or not rid or len(rid) > MAX_ID_LENGTH:
            raise InvalidInputError(
                f"request id {rid!r} is not a non-empty string of at most {MAX_ID_LENGTH} chars"
            )
        check_request_id(rid)  # the rule ids are accepted by, so feedback can name them
    if len(set(ids)) != len(ids):
        raise InvalidInputError("feedback names a request id twice", hint="send each id once")
    return ids, labels


_FEEDBACK_SHAPE = (
    'feedback must be {"request_ids": ["…", …], "labels": [label or [labels per row], …]}'
)


def encode_classes(classes: np.ndarray[Any, Any]) -> str:
    """Predicted classes as the JSON text stored with the prediction."""
    return orjson.dumps(classes.tolist()).decode()
