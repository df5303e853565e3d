"""Job and pipeline commands: pipeline run, jobs submit/list/show/logs/cancel, worker."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from modelfleet.cli.context import state
from modelfleet.cli.output import JsonFlag, console, emit_json, err_console, table

# ``cli.app`` mounts ``app`` without a name (``worker`` sits at the top of ``modelfleet``)
# and the two groups by name.
app = typer.Typer()
jobs_app = typer.Typer(help="Training jobs on the queue.", no_args_is_help=True)
pipeline_app = typer.Typer(help="Run pipelines directly.", no_args_is_help=True)

ParamOption = Annotated[list[str] | None, typer.Option("--param", help="key=value (repeatable)")]
KubeconfigOption = Annotated[
    Path | None,
    typer.Option(help="kubernetes backend: kubeconfig [default: KUBECONFIG or ~/.kube/config]"),
]


def _queue(ctx: typer.Context) -> Any:
    from modelfleet.jobs import JobQueue

    queue = JobQueue(state(ctx).settings.db_url)
    ctx.call_on_close(queue.close)  # the database connections go with the command
    return queue


def print_report(report: dict[str, Any]) -> None:
    """The run report, for people."""
    rows = [
        [
            s["name"],
            s["status"],
            f"{s['seconds']:.2f}",
            ", ".join(f"{k}: {v}" for k, v in s.get("outputs", {}).items()),
        ]
        for s in report.get("steps", [])
    ]
    console.print(
        table(
            f"run {report.get('run_id')} of {report.get('pipeline')}",
            ("step", "status", "s", "outputs"),
            rows,
        )
    )
    for failure in report.get("validation", [])[:10]:
        console.print(
            f"  invalid: column {failure['column']} row {failure['row']}: "
            f"{failure['value']!r} fails {failure['check']}"
        )
    if report.get("metrics"):
        console.print(
            "  metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in report["metrics"].items())
        )
    if report.get("version"):
        console.print(f"  version: {report['version']}", markup=False)
    gate = report.get("gate") or {}
    if gate:
        verdict = {
            True: f"promoted to {gate.get('stage')}",
            False: "not promoted",
            None: "nothing new",
        }[gate.get("passed")]
        console.print(f"  gate: {verdict} ({gate.get('reason')})", markup=False)
    if report.get("error"):
        console.print(f"  [red]error:[/] {escape(str(report['error']))}")


@pipeline_app.command("run")
def pipeline_run(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="pipeline file (defines `pipeline`)")],
    param: ParamOption = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="run every step")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Run a pipeline here and now (steps, validation, registration, gate)."""
    from modelfleet.errors import ModelfleetError
    from modelfleet.pipeline import load_pipeline, parse_params, run_pipeline

    pipeline = load_pipeline(path)
    report = run_pipeline(
        pipeline,
        parse_params(param or []),
        settings=state(ctx).settings,
        use_cache=not no_cache,
        say=(lambda _: None) if as_json else console.print,
    )
    if as_json:
        emit_json(report.as_dict())
    else:
        print_report(report.as_dict())
    if not report.ok:
        raise ModelfleetError(f"pipeline {pipeline.name} failed: {report.error}")


@jobs_app.command("submit")
def jobs_submit(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="pipeline file")],
    param: ParamOption = None,
    gpus: Annotated[int, typer.Option(help="GPUs the job needs")] = 0,
    cpus: Annotated[float, typer.Option(help="CPUs the job needs")] = 1.0,
    memory: Annotated[str, typer.Option(help="memory, e.g. 4Gi")] = "1Gi",
    priority: Annotated[int, typer.Option(help="higher runs first")] = 0,
    max_attempts: Annotated[int, typer.Option(help="tries when workers are lost")] = 3,
    backend: Annotated[str, typer.Option(help="local or kubernetes")] = "local",
    image: Annotated[
        str | None,
        typer.Option(
            help="kubernetes: the trainer image [default: the tag 'modelfleet build --trainer' "
            "gives this pipeline file]"
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="kubernetes: write the Job manifest here")
    ] = None,
    kubeconfig: KubeconfigOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Queue a pipeline run for a worker (or as a Kubernetes Job)."""
    from modelfleet.errors import JobError
    from modelfleet.pipeline import load_pipeline, parse_params
    from modelfleet.registry import current_user

    st = state(ctx)
    load_pipeline(path)  # refuse a broken pipeline file now, not on a worker later
    if backend not in ("local", "kubernetes"):
        raise JobError(f"unknown backend {backend!r}", hint="use local or kubernetes")
    queue = _queue(ctx)
    sending: list[Any] = []

    def render(job: Any) -> None:
        # Before the row is committed: a job that cannot be rendered, or sent to a cluster
        # that cannot be reached, is not queued. The Job is created after the commit, so its
        # pod always finds its row.
        manifest = _kubernetes_manifest(st.settings, job, image, out)
        if out is None:
            from modelfleet.kube import Cluster

            sending[:] = [manifest, Cluster.connect(kubeconfig)]

    job = queue.submit(
        str(path.resolve()),
        parse_params(param or []),
        gpus=gpus,
        cpus=cpus,
        memory=memory,
        priority=priority,
        max_attempts=max_attempts,
        backend=backend,
        user=current_user(st.settings.user),
        check=render if backend == "kubernetes" else None,
    )
    if sending:
        _kubernetes_submit(queue, job, sending[0], sending[1], st.settings)
    if backend == "local" and gpus:
        _warn_if_no_worker_fits(queue, gpus)
    if as_json:
        emit_json(queue.get(job.id))
    else:
        console.print(
            f"job {job.id} queued ({backend}, priority {priority}"
            + (f", {gpus} GPU" if gpus else "")
            + ")"
        )


def _warn_if_no_worker_fits(queue: Any, gpus: int) -> None:
    """Say so now when the live workers are all too small: the first to look fails the job."""
    from modelfleet.jobs import gpu_shortage

    offered = queue.offered_gpus()
    if offered is not None and offered < gpus:
        err_console.print(
            f"[yellow]warning:[/] {escape(str(gpu_shortage(gpus, offered)))}", soft_wrap=True
        )


def _kubernetes_manifest(settings: Any, job: Any, image: str | None, out: Path | None) -> Any:
    """Render a job's Kubernetes Job (and write it under ``out`` when given).

    The pod runs the trainer image's copy of the pipeline and checks it is the file submitted
    here (its sha256, read now); the image defaults to the tag the trainer build gives it.
    """
    import yaml

    from modelfleet.build import PipelineFile
    from modelfleet.jobs import registry_secret, render_job
    from modelfleet.kube import to_api_dict

    submitted = PipelineFile.read(Path(job.pipeline))
    manifest = render_job(
        job,
        settings,
        image=image or submitted.tag(),
        pipeline=submitted.in_image,
        pipeline_sha256=submitted.sha256,
    )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{manifest.metadata.name}.yaml").write_text(
            yaml.safe_dump(to_api_dict(manifest), sort_keys=False)
        )
        secret = registry_secret(settings, manifest.metadata.namespace)
        path = out / f"{secret['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(secret, sort_keys=False))
        path.chmod(0o600)  # the registry's password: its owner only
    return manifest


def _kubernetes_submit(queue: Any, job: Any, manifest: Any, cluster: Any, settings: Any) -> None:
    from modelfleet.errors import JobError, ModelfleetError
    from modelfleet.jobs import JobState, submit_job

    try:
        name = submit_job(cluster, manifest, settings)
    except ModelfleetError:
        queue.end_external(job.id, JobState.FAILED, "the cluster refused the Job")
        raise
    queue.set_external(job.id, name)
    if name is None:  # pragma: no cover - submit raises on failure
        raise JobError("the Kubernetes Job was not created")


@jobs_app.command("list")
def jobs_list(
    ctx: typer.Context,
    state_filter: Annotated[str | None, typer.Option("--state", help="only this state")] = None,
    limit: Annotated[int, typer.Option(help="how many")] = 30,
    as_json: JsonFlag = False,
) -> None:
    """Jobs, newest first."""
    queue = _queue(ctx)
    jobs = queue.list(state=state_filter, limit=limit)
    if as_json:
        emit_json(jobs)
        return
    rows = []
    for j in jobs:
        note = queue.waiting_reason(j) or (j.error or "")[:60]
        version = (j.result or {}).get("version") or ""
        rows.append(
            [
                j.id,
                j.state.value,
                j.priority,
                j.attempts,
                j.gpus,
                Path(j.pipeline).name,
                version,
                j.lease_owner or "",
                note,
            ]
        )
    console.print(
        table(
            "jobs",
            ("id", "state", "prio", "tries", "gpus", "pipeline", "version", "worker", "note"),
            rows,
        )
    )


@jobs_app.command("show")
def jobs_show(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="job id")],
    kubeconfig: KubeconfigOption = None,
    as_json: JsonFlag = False,
) -> None:
    """One job: state, attempts, result (the run report); a Kubernetes Job is asked first."""
    queue = _queue(ctx)
    job = queue.get(job_id)
    cluster_says = ""
    if job.backend == "kubernetes" and job.external_id:
        job, cluster_says = _sync_kubernetes(queue, job, kubeconfig)
    if as_json:
        emit_json(job)
        return
    console.print(
        f"job {job.id}: [bold]{job.state.value}[/] after {job.attempts} attempt(s); "
        f"{escape(job.pipeline)} {escape(str(job.params))}"
    )
    if cluster_says:
        console.print(f"  cluster: {cluster_says}", markup=False)
    reason = "" if cluster_says else queue.waiting_reason(job)
    if reason:
        console.print(f"  {reason}", markup=False)
    if job.error:
        console.print(f"  error: {job.error}", markup=False)
    if job.result:
        print_report(job.result)


@jobs_app.command("logs")
def jobs_logs(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="job id")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="stream until the job ends")
    ] = False,
) -> None:
    """A job's output (all attempts); --follow streams it while it runs."""
    from modelfleet.jobs import FINISHED

    queue = _queue(ctx)
    last = 0
    while True:
        for chunk_id, _, text in queue.logs(job_id, after=last):
            print(text, end="", flush=True)
            last = chunk_id
        if not follow or queue.get(job_id).state in FINISHED:
            if follow:  # the final chunks land just before the state changes
                for _, _, text in queue.logs(job_id, after=last):
                    print(text, end="", flush=True)
            break
        time.sleep(0.5)


@jobs_app.command("cancel")
def jobs_cancel(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="job id")],
    kubeconfig: KubeconfigOption = None,
) -> None:
    """Cancel a queued job, or stop a running one (a Kubernetes Job is deleted)."""
    from modelfleet.errors import JobError
    from modelfleet.jobs import FINISHED, JobState, delete_job

    queue = _queue(ctx)
    job = queue.get(job_id)
    if job.backend == "kubernetes" and job.external_id and job.state not in FINISHED:
        from modelfleet.kube import Cluster

        delete_job(Cluster.connect(kubeconfig).api, job.external_id)
        if not queue.end_external(
            job_id, JobState.CANCELLED, "cancelled; its Kubernetes Job was deleted"
        ):
            raise JobError(f"job {job_id} finished before it could be cancelled")
        console.print(f"job {job_id}: cancelled (Kubernetes Job {job.external_id} deleted)")
        return
    job = queue.cancel(job_id)
    verdict = "cancelled" if job.state.value == "cancelled" else "stopping (its worker will end it)"
    console.print(f"job {job_id}: {verdict}")


def _sync_kubernetes(queue: Any, job: Any, kubeconfig: Path | None) -> tuple[Any, str]:
    from modelfleet.jobs import sync_job
    from modelfleet.kube import Cluster

    return sync_job(queue, Cluster.connect(kubeconfig).api, job)


@app.command()
def worker(
    ctx: typer.Context,
    gpus: Annotated[
        int | None,
        typer.Option(
            envvar="MODELFLEET_GPUS",
            help="GPUs this worker offers [default: those CUDA_VISIBLE_DEVICES lists, "
            "else those nvidia-smi -L lists, else none]",
        ),
    ] = None,
    cpus: Annotated[float | None, typer.Option(help="CPUs this worker offers")] = None,
    concurrency: Annotated[int, typer.Option(help="jobs at once")] = 1,
    name: Annotated[str | None, typer.Option(help="worker name")] = None,
    lease: Annotated[
        float, typer.Option(help="lease seconds (a dead worker's jobs wait this long)")
    ] = 30.0,
    once: Annotated[bool, typer.Option("--once", help="stop when nothing is left to do")] = False,
) -> None:
    """Run queued jobs (local backend) until SIGTERM."""
    from modelfleet.jobs import Worker

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runner = Worker(
        _queue(ctx),
        state(ctx).settings,
        name=name,
        gpus=gpus,
        cpus=cpus,
        concurrency=concurrency,
        lease_s=lease,
    )
    done = runner.run(stop, once=once)
    console.print(f"worker {runner.name}: {done} job(s) finished")
