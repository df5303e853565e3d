"""Kubernetes commands: deploy, rollback, status (which also watches a server by URL)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn

from modelfleet.cli.context import state
from modelfleet.cli.output import JsonFlag, console, emit_json, table
from modelfleet.errors import DeployError
from modelfleet.refs import parse_stage

# Mounted without a name by ``cli.app``: these commands sit at the top of ``modelfleet``.
app = typer.Typer()

KubeconfigOption = Annotated[
    Path | None, typer.Option(help="kubeconfig file [default: KUBECONFIG or ~/.kube/config]")
]


@app.command()
def deploy(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="name, name:VERSION or name@STAGE")],
    env: Annotated[str, typer.Option("--env", help="dev, qa, uat or prod")],
    image: Annotated[str | None, typer.Option(help="image (default: the build's tag)")] = None,
    replicas: Annotated[int, typer.Option(help="replicas without autoscaling")] = 2,
    autoscale: Annotated[str | None, typer.Option(help="MIN:MAX replicas (HPA)")] = None,
    target_cpu: Annotated[int, typer.Option(help="HPA CPU utilization target, %")] = 70,
    queue_target: Annotated[
        float | None, typer.Option(help="HPA target for the queue-depth custom metric")
    ] = None,
    cpu: Annotated[str, typer.Option(help="CPU request, e.g. 500m")] = "500m",
    memory: Annotated[str, typer.Option(help="memory request, e.g. 512Mi")] = "512Mi",
    cpu_limit: Annotated[str, typer.Option(help="CPU limit")] = "2",
    memory_limit: Annotated[str, typer.Option(help="memory limit")] = "1Gi",
    gpu: Annotated[int, typer.Option(help="nvidia.com/gpu per pod")] = 0,
    namespace: Annotated[
        str | None, typer.Option(help="namespace [default: modelfleet-ENV]")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="write manifests to this folder")] = None,
    apply: Annotated[bool, typer.Option("--apply", help="apply to the cluster and wait")] = False,
    kserve: Annotated[bool, typer.Option("--kserve", help="a KServe InferenceService")] = False,
    kubeconfig: KubeconfigOption = None,
    timeout: Annotated[float, typer.Option(help="rollout timeout, seconds")] = 300,
    state_url: Annotated[
        str | None,
        typer.Option(
            help="PostgreSQL or Redis URL every replica shares predictions and feedback in "
            "(rendered into a Secret the pods read)"
        ),
    ] = None,
    state_secret: Annotated[
        str | None,
        typer.Option(
            help="an existing Secret in the namespace whose key 'url' is the state URL "
            "[default with --state-url: NAME-state]"
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Render Kubernetes manifests for REF in an environment; apply them with --apply."""
    from modelfleet.build import image_tag
    from modelfleet.deploy import DeploySpec, parse_autoscale, render, to_dict, write
    from modelfleet.kube import k8s_name

    st = state(ctx)
    stage = parse_stage(env)
    with st.registry() as reg:
        version = reg.get(ref)
        profiled = reg.reference_profile(version) is not None
    onnx = version.artifact("onnx")
    if onnx is None:
        raise DeployError(
            f"{version.ref} has no ONNX graph", hint=f"modelfleet freeze {version.ref}"
        )
    spec = DeploySpec(
        model=version.name,
        version=version.version,
        variant=version.variant.value,
        environment=stage,
        image=image or image_tag(version, stage),
        artifact_sha256=onnx.sha256,
        metrics=dict(version.metrics),
        profile=profiled,
        namespace=namespace,
        replicas=replicas,
        autoscale=parse_autoscale(autoscale),
        target_cpu=target_cpu,
        queue_target=queue_target,
        cpu=cpu,
        memory=memory,
        cpu_limit=cpu_limit,
        memory_limit=memory_limit,
        gpu=gpu,
        state_secret=state_secret or (f"{k8s_name(version.name)}-state" if state_url else None),
    )
    objects = render(spec, kserve=kserve, state_url=state_url)
    if not apply or out is not None:
        folder = out or st.settings.home / "manifests" / f"{spec.name}-{stage.value}"
        files = write(objects, folder)
        if not apply:
            if as_json:
                emit_json({"folder": str(folder), "files": [f.name for f in files]})
            else:
                console.print(
                    f"wrote {len(files)} manifests and kustomization.yaml to {folder}", markup=False
                )
            return
    _apply(spec, [to_dict(o) for o in objects], kubeconfig, timeout, kserve, as_json)


def _apply(
    spec: Any,
    objects: list[dict[str, Any]],
    kubeconfig: Path | None,
    timeout: float,
    kserve: bool,
    as_json: bool,
) -> None:
    from modelfleet.deploy import prune_serve_configs, wait_rollout
    from modelfleet.kube import Cluster, apply_objects

    cluster = Cluster.connect(kubeconfig)
    result = apply_objects(cluster, objects)
    if not as_json:
        console.print(f"cluster {cluster.server_version}: applied {len(result.applied)} objects")
        for note in result.skipped:
            console.print(f"  skipped {note}", markup=False)
    if kserve:
        return
    with Progress(
        TextColumn("rollout {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} ready"),
        console=console,
        transient=True,
        disable=as_json,
    ) as bar:
        task = bar.add_task(f"{spec.ns}/{spec.name}", total=None)
        state_ = wait_rollout(
            cluster,
            spec.name,
            spec.ns,
            timeout=timeout,
            progress=lambda s: bar.update(task, total=s.desired, completed=s.ready),
        )
    pruned = prune_serve_configs(cluster, spec.name, spec.ns)
    if as_json:
        emit_json(
            {
                "applied": result.applied,
                "skipped": result.skipped,
                "ready": state_.ready,
                "desired": state_.desired,
                "pruned": pruned,
            }
        )
    else:
        console.print(
            f"{spec.ns}/{spec.name}: version {spec.version} rolled out "
            f"({state_.ready}/{state_.desired} ready)"
        )
        for name in pruned:
            console.print(f"  deleted ConfigMap {name} (no revision mounts it any more)")


@app.command("rollback")
def rollback_command(
    name: Annotated[str, typer.Argument(help="model name")],
    env: Annotated[str, typer.Option("--env", help="dev, qa, uat or prod")],
    namespace: Annotated[
        str | None, typer.Option(help="namespace [default: modelfleet-ENV]")
    ] = None,
    kubeconfig: KubeconfigOption = None,
    timeout: Annotated[float, typer.Option(help="rollout timeout, seconds")] = 300,
) -> None:
    """Return a deployed model to its previous revision and wait for the rollout."""
    from modelfleet.deploy import check_namespace, rollback, wait_rollout
    from modelfleet.kube import Cluster, k8s_name

    stage = parse_stage(env)
    ns = check_namespace(namespace or f"modelfleet-{stage.value}")
    cluster = Cluster.connect(kubeconfig)
    revision = rollback(cluster, k8s_name(name), ns)
    final = wait_rollout(cluster, k8s_name(name), ns, timeout=timeout)
    console.print(
        f"{ns}/{k8s_name(name)} back to revision {revision} ({final.ready}/{final.desired} ready)"
    )


@app.command("status")
def status_command(
    url: Annotated[
        str | None,
        typer.Argument(
            help="a running server (http:// or https://): watch its live figures instead of "
            "listing the cluster's deployments"
        ),
    ] = None,
    kubeconfig: KubeconfigOption = None,
    once: Annotated[bool, typer.Option("--once", help="with URL: print once and exit")] = False,
    interval: Annotated[
        float, typer.Option(min=0.2, help="with URL: seconds between refreshes")
    ] = 2.0,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="MODELFLEET_TOKEN",
            help="with URL: bearer token (admin scope) for a server whose metrics are closed",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List modelfleet deployments in the cluster, or watch a running server given its URL."""
    if url is not None:
        from modelfleet.cli.status_view import show_status

        show_status(url, token=token, interval=interval, once=once, as_json=as_json)
        return
    from modelfleet.deploy import list_deployments
    from modelfleet.kube import Cluster

    rows = list_deployments(Cluster.connect(kubeconfig))
    if as_json:
        emit_json(rows)
        return
    columns = ("namespace", "name", "environment", "version", "variant", "ready", "image")
    console.print(table("modelfleet deployments", columns, [[r[c] for c in columns] for r in rows]))
