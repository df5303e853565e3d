"""Predictions by request id, true labels joined to them, and the live accuracy that follows.

Every answered request of a classifier is recorded as ``(model, request id, version, predicted
classes)`` in a SQLite file in the server's state directory. Worker processes of one server
share the file (WAL mode), so feedback may land on any of them. Feedback rows keep how many
rows of the request were right; live accuracy is computed over the most recent labelled
requests of a model version. Old predictions are pruned by age and count.

All methods block: the server calls them on one dedicated thread.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
"""
_LOOKUP_CHUNK = 500
MAX_ID_LENGTH = 128


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


class FeedbackStore:
    """The SQLite file of predictions and feedback."""

    def __init__(self, path: Path, *, retention_s: float, max_predictions: int) -> None:
        self.path = path
        self.retention_s = retention_s
        self.max_predictions = max_predictions
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=10.0, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def add_predictions(self, rows: Sequence[tuple[str, str, str, float, str]]) -> None:
        """Record ``(model, id, version, ts, classes JSON)``; a reused id keeps the newest."""
        if rows:
            with self._db:
                self._db.executemany(
                    "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?)", rows
                )

    def prune(self, now: float | None = None) -> int:
        """Drop predictions older than the retention or beyond the row cap."""
        cutoff = (now or time.time()) - self.retention_s
        with self._db:
            gone = self._db.execute("DELETE FROM predictions WHERE ts < ?", (cutoff,)).rowcount
            (count,) = self._db.execute("SELECT count(*) FROM predictions").fetchone()
            if count > self.max_predictions:
                gone += self._db.execute(
                    "DELETE FROM predictions WHERE rowid IN "
                    "(SELECT rowid FROM predictions ORDER BY ts LIMIT ?)",
                    (count - self.max_predictions,),
                ).rowcount
        return gone

    def _lookup(self, model: str, ids: Sequence[str]) -> dict[str, tuple[str, list[Any]]]:
        found: dict[str, tuple[str, list[Any]]] = {}
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            chunk = ids[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))  # placeholders only; values are bound
            query = (
                f"SELECT id, version, classes FROM predictions WHERE model = ? AND id IN ({marks})"  # noqa: S608
            )
            for rid, version, classes in self._db.execute(query, (model, *chunk)):
                found[rid] = (version, orjson.loads(classes))
        return found

    def add_feedback(
        self, model: str, ids: Sequence[str], labels: Sequence[Any], kind: str
    ) -> FeedbackResult:
        """Join true labels to recorded predictions; all or nothing.

        Raises :class:`UnknownRequestIdError` (404) for ids never predicted (or pruned) and
        :class:`InvalidInputError` (400) for labels of the wrong type or count; nothing is
        written then.
        """
        known = self._lookup(model, list(dict.fromkeys(ids)))
        unknown = [rid for rid in ids if rid not in known]
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise UnknownRequestIdError(
                f"model {model!r} has no recorded prediction for request id {shown}{more}",
                hint="send the id from the prediction response (header X-Request-Id or the "
                "V2 'id'); predictions are kept for a limited time",
            )
        entries, total_rows, total_correct = [], 0, 0
        now = time.time()
        for index, (rid, given) in enumerate(zip(ids, labels, strict=True)):
            version, predicted = known[rid]
            truth = _labels(given, len(predicted), kind, index, rid)
            correct = sum(1 for p, t in zip(predicted, truth, strict=True) if p == t)
            entries.append((model, rid, version, now, len(predicted), correct))
            total_rows += len(predicted)
            total_correct += correct
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO feedback (model, id, version, ts, rows, correct) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                entries,
            )
        per_version: dict[str, tuple[int, int]] = {}
        for _, _, version, _, rows, correct in entries:
            seen_rows, seen_correct = per_version.get(version, (0, 0))
            per_version[version] = (seen_rows + rows, seen_correct + correct)
        return FeedbackResult(len(entries), total_rows, total_correct, per_version)

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
    if len(set(ids)) != len(ids):
        raise InvalidInputError("feedback names a request id twice", hint="send each id once")
    return ids, labels


_FEEDBACK_SHAPE = (
    'feedback must be {"request_ids": ["…", …], "labels": [label or [labels per row], …]}'
)


def encode_classes(classes: np.ndarray[Any, Any]) -> str:
    """Predicted classes as the JSON text stored with the prediction."""
    return orjson.dumps(classes.tolist()).decode()
