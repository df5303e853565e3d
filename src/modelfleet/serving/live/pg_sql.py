"""The statements of the PostgreSQL predictions store, one round trip each.

Batches travel as arrays (``unnest``): one statement writes thousands of rows, and data-
modifying CTEs report what they replaced or deleted in the same trip. Every write statement
runs after ``LOCK_USAGE`` in its transaction, so the sizes it reads are current.
"""

from __future__ import annotations

from sqlalchemy import text

USAGE = text("SELECT bytes FROM serving_state_usage WHERE id = 1")
LOCK_USAGE = text("SELECT bytes FROM serving_state_usage WHERE id = 1 FOR UPDATE")
ADD_BYTES = text("UPDATE serving_state_usage SET bytes = bytes + :d WHERE id = 1 RETURNING bytes")
COUNTS = text(
    "SELECT (SELECT count(*) FROM serving_predictions), (SELECT count(*) FROM serving_feedback)"
)

# Bytes added: the new rows' sizes less those of the rows they replaced (read before the
# write: every part of one statement sees the same snapshot).
UPSERT_PREDICTIONS = text("""
WITH incoming AS (
    SELECT * FROM unnest(
        CAST(:model AS text[]), CAST(:id AS text[]), CAST(:version AS text[]),
        CAST(:ts AS double precision[]), CAST(:classes AS text[]), CAST(:rows AS integer[])
    ) AS t (model, id, version, ts, classes, rows)
),
replaced AS (
    SELECT p.size FROM serving_predictions AS p
    JOIN incoming AS i ON p.model = i.model AND p.id = i.id
),
written AS (
    INSERT INTO serving_predictions (model, id, version, ts, classes, rows)
    SELECT model, id, version, ts, classes, rows FROM incoming
    ON CONFLICT (model, id) DO UPDATE SET version = excluded.version, ts = excluded.ts,
        classes = excluded.classes, rows = excluded.rows
    RETURNING size
)
SELECT coalesce((SELECT sum(size) FROM written), 0)
     - coalesce((SELECT sum(size) FROM replaced), 0)
""")

# A relabelled id takes a new ``seq``: it counts among the latest labelled requests again.
UPSERT_FEEDBACK = text("""
WITH incoming AS (
    SELECT * FROM unnest(
        CAST(:id AS text[]), CAST(:version AS text[]), CAST(:rows AS integer[]),
        CAST(:correct AS integer[])
    ) AS t (id, version, rows, correct)
),
replaced AS (
    SELECT f.size FROM serving_feedback AS f
    WHERE f.model = :model AND f.id IN (SELECT id FROM incoming)
),
written AS (
    INSERT INTO serving_feedback (model, id, version, ts, rows, correct)
    SELECT :model, id, version, :ts, rows, correct FROM incoming
    ON CONFLICT (model, id) DO UPDATE SET seq = DEFAULT, version = excluded.version,
        ts = excluded.ts, rows = excluded.rows, correct = excluded.correct
    RETURNING size
)
SELECT coalesce((SELECT sum(size) FROM written), 0)
     - coalesce((SELECT sum(size) FROM replaced), 0)
""")

LOOKUP = text(
    "SELECT id, version, classes, rows FROM serving_predictions "
    "WHERE model = :model AND id = ANY(CAST(:ids AS text[]))"
)

ACCURACY = text("""
SELECT count(*), coalesce(sum(rows), 0), coalesce(sum(correct), 0) FROM (
    SELECT rows, correct FROM serving_feedback WHERE model = :model AND version = :version
    ORDER BY seq DESC LIMIT :window
) AS recent
""")

# The oldest records of both tables merged by age, cut where their sizes cover :excess.
# The first :n of the merge are exact (each table gave its own :n oldest); no more is taken.
EVICT_OLDEST = text("""
WITH oldest AS (
    (SELECT 'p' AS kind, model, id, ts, size FROM serving_predictions ORDER BY ts LIMIT :n)
    UNION ALL
    (SELECT 'f' AS kind, model, id, ts, size FROM serving_feedback ORDER BY ts LIMIT :n)
),
ranked AS (
    SELECT kind, model, id, sum(size) OVER w - size AS before, row_number() OVER w AS place
    FROM oldest WINDOW w AS (ORDER BY ts, kind, model, id ROWS UNBOUNDED PRECEDING)
),
victims AS (SELECT kind, model, id FROM ranked WHERE before < :excess AND place <= :n),
predictions AS (
    DELETE FROM serving_predictions AS p USING victims AS v
    WHERE v.kind = 'p' AND p.model = v.model AND p.id = v.id
    RETURNING p.model, p.rows, p.size
),
feedback AS (
    DELETE FROM serving_feedback AS f USING victims AS v
    WHERE v.kind = 'f' AND f.model = v.model AND f.id = v.id
    RETURNING f.model, f.rows, f.size
)
SELECT model, rows, size FROM predictions UNION ALL SELECT model, rows, size FROM feedback
""")

# Batched deletes: each returns (rows deleted, their bytes) for the counter.
PRUNE_PREDICTIONS = text("""
WITH gone AS (
    DELETE FROM serving_predictions WHERE (model, id) IN (
        SELECT model, id FROM serving_predictions WHERE ts < :cutoff LIMIT :n
    ) RETURNING size
)
SELECT count(*), coalesce(sum(size), 0) FROM gone
""")
PRUNE_FEEDBACK = text("""
WITH gone AS (
    DELETE FROM serving_feedback WHERE seq IN (
        SELECT seq FROM serving_feedback WHERE ts < :cutoff LIMIT :n
    ) RETURNING size
)
SELECT count(*), coalesce(sum(size), 0) FROM gone
""")
DROP_OLDEST_PREDICTIONS = text("""
WITH gone AS (
    DELETE FROM serving_predictions WHERE (model, id) IN (
        SELECT model, id FROM serving_predictions ORDER BY ts LIMIT :n
    ) RETURNING size
)
SELECT count(*), coalesce(sum(size), 0) FROM gone
""")
