"""Predictions and feedback in PostgreSQL, shared by every replica of a served model.

The :class:`PredictionStore` of a fleet: any replica may record a prediction and any other
take its feedback, and all read the same live accuracy. It behaves as the SQLite
:class:`~modelfleet.serving.live.feedback.FeedbackStore` does, call for call.

The budget is in logical bytes. Every row stores its ``size`` (its text plus a fixed
overhead, a generated column) and one counter row holds their sum; each write locks that
row first, changes it in the same transaction (``UPDATE … RETURNING bytes``) and, when over
``max_bytes``, evicts the oldest records, predictions and feedback by age, before it commits.
Locking the counter first also makes writers from all replicas take turns, so a replaced
row's old size is always the one subtracted. The disk holds more than :meth:`usage` says:
indexes, page headers and fill, and dead row versions that stay until (auto)vacuum reclaims
them (MVCC). None of that is the store's to measure: a replica sees neither the database's
files nor its vacuum schedule, and other tables may share the database. So the bound here
is on what the store keeps, which it can count exactly and enforce at once; size the
database's disk with headroom over it.

Opening connects to nothing, so a server starts while the database is down. The schema is
brought up to date by the first call that reaches it (again after any failure). Each call
is bounded by ``timeout_s`` per connect and per statement; any failure raises
:class:`StateUnavailableError`, and the next call after the server is back just works.

All methods block: the server calls them on one dedicated thread.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import Connection

from modelfleet.serving.live import pg_sql as sql
from modelfleet.serving.live.feedback import Accuracy, FeedbackResult, PredictionRow, judge
from modelfleet.serving.live.pg_state import (
    FAILURES,
    state_engine,
    unavailable,
    upgrade_state_schema,
)

_CHUNK_ROWS = 5000  # rows per write transaction at most: statements stay a few MB
_PRUNE_BATCH = 5000  # rows deleted per transaction, so other replicas get the lock between
_EVICT_BATCH = 1000
_ROW_OVERHEAD = 64  # as in the generated ``size`` columns


class PostgresStore:
    """Predictions and feedback in a PostgreSQL database every replica shares."""

    def __init__(
        self,
        url: str,
        *,
        retention_s: float,
        max_predictions: int,
        max_bytes: int = 32 << 20,
        feedback_retention_s: float | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        self.url = url
        self.retention_s = retention_s
        self.feedback_retention_s = feedback_retention_s or retention_s
        self.max_predictions = max_predictions
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        # A write transaction adds at most this much before it evicts: the overshoot on disk.
        self._write_chunk = max(64 << 10, max_bytes // 32)
        self._engine = state_engine(url, timeout_s)
        self._schema_ready = False

    def close(self) -> None:
        """Close the pooled connections."""
        self._engine.dispose()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One transaction, the schema ensured first; database failures become one error."""
        try:
            if not self._schema_ready:
                upgrade_state_schema(self._engine, self.url)
                self._schema_ready = True
            with self._engine.begin() as conn:
                yield conn
        except FAILURES as exc:
            self._schema_ready = False  # it may be a new, empty database when it is back
            raise unavailable(self.url, exc) from exc

    def usage(self) -> int:
        """Logical bytes held (the sum of the rows' sizes), which ``max_bytes`` bounds."""
        with self._transaction() as conn:
            return int(conn.execute(sql.USAGE).scalar_one())

    def counts(self) -> dict[str, int]:
        """Rows held, for status pages and tests."""
        with self._transaction() as conn:
            predictions, feedback = conn.execute(sql.COUNTS).one()
        return {"predictions": int(predictions), "feedback": int(feedback)}

    def add_predictions(self, rows: Sequence[PredictionRow]) -> dict[str, int]:
        """Record predictions (a reused id keeps the newest); returns rows evicted per model.

        Written a chunk per transaction, each making room by evicting the oldest records.
        """
        latest = {(row[0], row[1]): row for row in rows}  # one statement may not hit a key twice
        evicted: dict[str, int] = {}
        for chunk in self._chunks(list(latest.values())):
            columns = {
                "model": [str(r[0]) for r in chunk],
                "id": [str(r[1]) for r in chunk],
                "version": [str(r[2]) for r in chunk],
                "ts": [float(r[3]) for r in chunk],
                "classes": [str(r[4]) for r in chunk],
                "rows": [int(r[5]) for r in chunk],
            }
            with self._transaction() as conn:
                conn.execute(sql.LOCK_USAGE)
                delta = int(conn.execute(sql.UPSERT_PREDICTIONS, columns).scalar_one())
                self._fit(conn, self._add_bytes(conn, delta), evicted)
        return evicted

    def _chunks(self, rows: list[PredictionRow]) -> Iterator[list[PredictionRow]]:
        start = 0
        while start < len(rows):
            end, size = start, 0
            while end < len(rows) and size < self._write_chunk and end - start < _CHUNK_ROWS:
                row = rows[end]
                size += len(row[4]) + len(row[1]) + len(row[0]) + len(row[2]) + _ROW_OVERHEAD
                end += 1
            yield rows[start:end]
            start = end

    @staticmethod
    def _add_bytes(conn: Connection, delta: int) -> int:
        return int(conn.execute(sql.ADD_BYTES, {"d": delta}).scalar_one())

    def _fit(self, conn: Connection, total: int, evicted: dict[str, int]) -> None:
        """Evict the oldest records until ``total`` fits the budget, in the open transaction."""
        while total > self.max_bytes:
            gone = conn.execute(
                sql.EVICT_OLDEST, {"excess": total - self.max_bytes, "n": _EVICT_BATCH}
            ).all()
            if not gone:
                break
            for model, rows, _ in gone:
                evicted[model] = evicted.get(model, 0) + int(rows)
            total = self._add_bytes(conn, -sum(int(size) for _, _, size in gone))

    def prune(self, now: float | None = None) -> int:
        """Drop predictions and feedback past retention, and predictions beyond the row cap."""
        now = now or time.time()
        gone = self._delete(sql.PRUNE_PREDICTIONS, {"cutoff": now - self.retention_s})
        gone += self._delete(sql.PRUNE_FEEDBACK, {"cutoff": now - self.feedback_retention_s})
        with self._transaction() as conn:
            predictions, _ = conn.execute(sql.COUNTS).one()
        excess = int(predictions) - self.max_predictions
        if excess > 0:
            gone += self._delete(sql.DROP_OLDEST_PREDICTIONS, {}, limit=excess)
        return gone

    def _delete(self, statement: Any, params: dict[str, Any], limit: int | None = None) -> int:
        """Run a ``DELETE … LIMIT :n`` a batch per transaction, the counter kept in step."""
        gone = 0
        while limit is None or gone < limit:
            batch = _PRUNE_BATCH if limit is None else min(_PRUNE_BATCH, limit - gone)
            with self._transaction() as conn:
                conn.execute(sql.LOCK_USAGE)
                count, freed = conn.execute(statement, {**params, "n": batch}).one()
                if count:
                    self._add_bytes(conn, -int(freed))
            gone += int(count)
            if count < batch:
                break
        return gone

    def add_feedback(
        self, model: str, ids: Sequence[str], labels: Sequence[Any], kind: str
    ) -> FeedbackResult:
        """Join true labels to recorded predictions; all or nothing.

        A request whose classes were cut to the first rows is judged on those rows. Raises
        :class:`UnknownRequestIdError` (404) for ids never predicted (or pruned) and
        :class:`InvalidInputError` (400) for labels of the wrong type or count; nothing is
        written then. Labelling an id again replaces its earlier labels.
        """
        with self._transaction() as conn:
            known = {
                rid: (version, orjson.loads(classes), int(rows))
                for rid, version, classes, rows in conn.execute(
                    sql.LOOKUP, {"model": model, "ids": list(dict.fromkeys(ids))}
                )
            }
            judged, result = judge(model, ids, labels, kind, known)
            latest = list({j[0]: j for j in judged}.values())  # one statement, one row per id
            # Locked only now: checking labels holds up no other replica's writes.
            conn.execute(sql.LOCK_USAGE)
            delta = conn.execute(
                sql.UPSERT_FEEDBACK,
                {
                    "model": model,
                    "ts": time.time(),
                    "id": [j[0] for j in latest],
                    "version": [j[1] for j in latest],
                    "rows": [j[2] for j in latest],
                    "correct": [j[3] for j in latest],
                },
            ).scalar_one()
            self._fit(conn, self._add_bytes(conn, int(delta)), {})
        return result

    def accuracy(self, model: str, version: str, window: int) -> Accuracy:
        """Accuracy over the last ``window`` labelled requests of a version (rows weighted)."""
        with self._transaction() as conn:
            requests, rows, correct = conn.execute(
                sql.ACCURACY,
                # LIMIT NULL is no limit: a negative window means all, as in SQLite.
                {"model": model, "version": version, "window": window if window >= 0 else None},
            ).one()
        return Accuracy(correct / rows if rows else None, int(requests), int(rows))
