"""``python -m modelfleet.jobs.runner``: run one job's pipeline (in a worker's child or a pod).

Under a local worker it writes the run report to ``--result`` and the worker records it.
In a Kubernetes Job (``--record``) it leases and records its job in the queue itself, and
runs the trainer image's copy of the pipeline (``--pipeline``) only when its sha256 is the
submitted file's (``--pipeline-sha256``): an image built from other code is refused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

from modelfleet.config import Settings, load_settings
from modelfleet.errors import JobError
from modelfleet.jobs.queue import Job, JobQueue, JobState
from modelfleet.pipeline import load_pipeline, run_pipeline


def pipeline_file(submitted: str, given: Path | None, sha256: str | None) -> Path:
    """The file to run: the job's own, or the image's copy when it is the one submitted."""
    path = given or Path(submitted)
    if sha256 is None:
        return path
    name = Path(submitted).name
    try:
        found = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise JobError(
            f"the image has no pipeline file at {path} ({exc.strerror})",
            hint=f"build a trainer image: modelfleet build --trainer {name}",
        ) from exc
    if found != sha256.lower():
        raise JobError(
            f"the trainer image carries a different {name} "
            f"(sha256 {found[:12]}, submitted {sha256[:12]})",
            hint=f"rebuild it: modelfleet build --trainer {name}",
        )
    return path


def _run(path: Path, job: Job, settings: Settings) -> tuple[dict[str, Any], bool]:
    try:
        pipeline = load_pipeline(path)
        # The image's copy is the submitted file (same sha256): the lineage names the file
        # people submitted, so a retrain started from their machine finds it again.
        pipeline.source = job.pipeline
        report = run_pipeline(
            pipeline,
            job.params,
            settings=settings,
            run_id=f"job{job.id}-{job.attempts}",
            job=job.id,  # a retry reuses what an earlier attempt registered
        )
    except Exception as exc:  # report any failure of the user's pipeline as the job's error
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}"}, False
    return report.as_dict(), report.ok


def main(argv: list[str] | None = None) -> int:
    """Run the job; exit 0 when the pipeline succeeded."""
    parser = argparse.ArgumentParser(prog="python -m modelfleet.jobs.runner")
    parser.add_argument("--job", type=int, required=True)
    parser.add_argument("--result", type=Path)
    parser.add_argument("--record", action="store_true", help="lease and record the job here")
    parser.add_argument("--pipeline", type=Path, help="run this file instead of the job's path")
    parser.add_argument("--pipeline-sha256", help="refuse a pipeline file with another digest")
    args = parser.parse_args(argv)
    settings = load_settings()
    queue = JobQueue(settings.db_url)
    owner = f"pod/{socket.gethostname()}"
    job = queue.take(args.job, owner) if args.record else queue.get(args.job)
    print(
        f"job {job.id} attempt {job.attempts}: {job.pipeline} {json.dumps(job.params)}", flush=True
    )
    try:
        path = pipeline_file(job.pipeline, args.pipeline, args.pipeline_sha256)
    except JobError as exc:  # one line for the job's error; there is nothing to trace
        print(f"job {job.id}: {exc}", flush=True)
        result, ok = {"error": str(exc)}, False
    else:
        result, ok = _run(path, job, settings)
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
