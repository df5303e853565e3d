"""``python -m modelfleet.jobs.runner``: run one job's pipeline (in a worker's child or a pod).

Under a local worker it writes the run report to ``--result`` and the worker records it.
In a Kubernetes Job (``--record``) it leases and records its job in the queue itself.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import traceback
from pathlib import Path

from modelfleet.config import load_settings
from modelfleet.jobs.queue import JobQueue, JobState
from modelfleet.pipeline import load_pipeline, run_pipeline


def main(argv: list[str] | None = None) -> int:
    """Run the job; exit 0 when the pipeline succeeded."""
    parser = argparse.ArgumentParser(prog="python -m modelfleet.jobs.runner")
    parser.add_argument("--job", type=int, required=True)
    parser.add_argument("--result", type=Path)
    parser.add_argument("--record", action="store_true", help="lease and record the job here")
    args = parser.parse_args(argv)
    settings = load_settings()
    queue = JobQueue(settings.db_url)
    owner = f"pod/{socket.gethostname()}"
    job = queue.take(args.job, owner) if args.record else queue.get(args.job)
    print(
        f"job {job.id} attempt {job.attempts}: {job.pipeline} {json.dumps(job.params)}", flush=True
    )
    try:
        pipeline = load_pipeline(job.pipeline)
        report = run_pipeline(
            pipeline,
            job.params,
            settings=settings,
            run_id=f"job{job.id}-{job.attempts}",
            job=job.id,  # a retry reuses what an earlier attempt registered
        )
        result = report.as_dict()
        ok = report.ok
    except Exception as exc:  # report any failure of the user's pipeline as the job's error
        traceback.print_exc()
        result, ok = {"error": f"{type(exc).__name__}: {exc}"}, False
    if args.result:
        args.result.write_text(json.dumps(result, default=str))
    if args.record:
        queue.finish(
            job.id,
            owner,
            job.attempts,
            JobState.SUCCEEDED if ok else JobState.FAILED,
            result=result,
            error=None if ok else str(result.get("error")),
        )
    queue.close()
    print(f"job {job.id}: {'succeeded' if ok else 'failed'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
