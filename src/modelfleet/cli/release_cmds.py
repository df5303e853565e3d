"""The release command: the version a stage points at, to the cluster through a judged canary.

Like ``deploy``, it renders and applies nothing unless ``--apply``: the default (or
``--dry-run``) writes the canary's manifests and prints the plan without a cluster. With
``--apply`` the verdict is printed, recorded in the model's history, and a release that
did not promote exits 1.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelfleet.cli.context import State, state
from modelfleet.cli.output import JsonFlag, console, emit_json, table
from modelfleet.errors import DeployError
from modelfleet.refs import ModelRef, Stage, parse_ref, parse_stage

if TYPE_CHECKING:
    from modelfleet.deploy import DeploySpec, ReleaseOutcome, ReleasePlan
    from modelfleet.registry import ModelVersion

# Mounted without a name by ``cli.app``: the command sits at the top of ``modelfleet``.
app = typer.Typer()

# The option that sets each of the judge's thresholds.
_FLAGS = {
    "min_requests": "--min-requests",
    "error_margin": "--error-margin",
    "error_floor": "--error-floor",
    "max_p99_ratio": "--max-p99-ratio",
    "p99_floor_ms": "--p99-floor-ms",
    "min_labelled": "--min-labelled",
    "accuracy_delta": "--min-accuracy-delta",
}


def _stage_ref(name: str, stage: Stage) -> ModelRef:
    parsed = parse_ref(name)
    if not parsed.is_latest:
        raise DeployError(
            f"release takes a model name, not {name!r}",
            hint=f"run 'modelfleet release {parsed.name} --env {stage}': it releases the "
            f"version {parsed.name}@{stage} points at",
        )
    return ModelRef(parsed.name, stage=stage)


def _spec(version: ModelVersion, stage: Stage, profiled: bool, **sizing: Any) -> DeploySpec:
    """The candidate as ``deploy`` renders it (the promoted stable is exactly this)."""
    from modelfleet.build import image_tag
    from modelfleet.deploy import DeploySpec

    onnx = version.artifact("onnx")
    if onnx is None:
        raise DeployError(
            f"{version.ref} has no ONNX graph", hint=f"modelfleet freeze {version.ref}"
        )
    image = sizing.pop("image") or image_tag(version, stage)
    return DeploySpec(
        model=version.name,
        version=version.version,
        variant=version.variant.value,
        environment=stage,
        image=image,
        artifact_sha256=onnx.sha256,
        metrics=dict(version.metrics),
        profile=profiled,
        **sizing,
    )


def _build(st: State, ref: str, stage: Stage, tag: str, base: str | None, quiet: bool) -> None:
    from modelfleet.build import DEFAULT_BASE, build, find_engine

    engine = find_engine("auto")
    if engine is None:
        raise DeployError(
            "--build needs a container engine (podman, buildah or docker) and none was found",
            hint="install podman, or build the image elsewhere and pass --image",
        )
    with st.registry() as reg:
        result = build(
            reg,
            ref,
            stage,
            out=st.settings.home / "builds" / f"release-{tag.rsplit('/', 1)[-1]}",
            cache=st.settings.home / "build-cache",
            engine=engine,
            base=base or DEFAULT_BASE,
            tag=tag,
        )
    if not quiet and result.image is not None:
        console.print(f"built {tag} ({result.image.size / 1e6:.0f} MB)", markup=False)


def _load(command: str, image: str, quiet: bool) -> None:
    import shlex
    import subprocess

    argv = [*shlex.split(command), image]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeployError(f"--load-with could not run {argv[0]}: {exc}") from exc
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise DeployError(
            f"--load-with failed (exit {done.returncode}) for {image}: {tail}",
            hint="check the command; it is run with the image name appended",
        )
    if not quiet:
        console.print(f"loaded {image} with {argv[0]}", markup=False)


def _dry_run(
    st: State, spec: DeploySpec, plan: ReleasePlan, out: Path | None, as_json: bool
) -> None:
    from modelfleet.deploy import canary_name, render_canary, write

    folder = out or st.settings.home / "manifests" / f"{spec.name}-{spec.environment}-canary"
    files = write(render_canary(spec, plan.canary_replicas), folder)
    canary = canary_name(spec.name)
    longest = plan.max_window_s or plan.window_s
    doc = {
        "dry_run": True,
        "candidate": f"{spec.model}:{spec.version}",
        "namespace": spec.ns,
        "stable_deployment": spec.name,
        "canary_deployment": canary,
        "canary_replicas": plan.canary_replicas,
        "canary_share": plan.share(spec.replicas),
        "window_s": plan.window_s,
        "max_window_s": longest,
        "thresholds": dataclasses.asdict(plan.thresholds),
        "folder": str(folder),
        "files": [f.name for f in files],
    }
    if as_json:
        emit_json(doc)
        return
    lines = [
        f"dry run: release {spec.model}:{spec.version} ({spec.model}@{spec.environment}) "
        f"to {spec.ns}; --apply runs it:",
        f"  1. read Deployment {spec.name}: the stable version "
        "(none: a first release, deployed as 'deploy --apply' does)",
        f"  2. start Deployment {canary}: {plan.canary_replicas} pod(s) of version "
        f"{spec.version} beside {spec.replicas} stable, ~{plan.share(spec.replicas):.0%} "
        "of the traffic",
        f"  3. judge for {plan.window_s:g} s (up to {longest:g} s while traffic is short) on "
        "the pods' /metrics, read through the API server",
        f"  4. promote: roll {spec.name} out to version {spec.version}, delete {canary}",
        f"     roll back: delete {canary}, leave {spec.name} as it is",
        f"wrote {len(files)} canary manifests and kustomization.yaml to {folder}",
    ]
    for line in lines:
        console.print(line, markup=False, soft_wrap=True)
    rules = dataclasses.asdict(plan.thresholds)
    rows = [[_FLAGS[rule], value] for rule, value in rules.items()]
    console.print(table("judging rules", ("option", "value"), rows))


def _show(outcome: ReleaseOutcome, where: str, as_json: bool) -> None:
    if as_json:
        emit_json({"namespace": where, **outcome.as_dict()})
        return
    verdict = outcome.verdict
    if verdict is not None:
        rows = [
            [
                track,
                f["version"],
                f["pods"],
                f"{f['requests']:.0f}",
                f"{f['error_ratio']:.2%}",
                "-" if f["p99_ms"] is None else f"{f['p99_ms']:.1f}",
                f"{f['labelled']:.0f}",
                "-" if f["accuracy"] is None else f"{f['accuracy']:.3f}",
            ]
            for track, f in verdict.as_dict()["figures"].items()
        ]
        columns = ("track", "version", "pods", "requests", "5xx", "p99 ms", "labelled", "accuracy")
        console.print(table(f"canary window, {verdict.canary.seconds:.0f} s", columns, rows))
        results = {True: "pass", False: "FAIL", None: "-"}
        checks = [[c.rule, results[c.passed], c.detail] for c in verdict.checks]
        console.print(table(f"verdict: {verdict.decision}", ("rule", "result", "detail"), checks))
    text = {
        "first-release": f"first release: {where} now serves version {outcome.candidate}",
        "promoted": f"promoted: {where} now serves version {outcome.candidate}",
        "rolled-back": f"rolled back: {where} still serves version "
        f"{outcome.stable.version if outcome.stable else '?'}",
        "unchanged": f"nothing to release: {outcome.note}",
    }[outcome.action]
    console.print(text, markup=False)
    if outcome.note and outcome.action == "rolled-back":
        console.print(f"  {outcome.note}", markup=False)


@app.command()
def release(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="model name: its ENV stage's version is released")],
    env: Annotated[str, typer.Option("--env", help="dev, qa, uat or prod")],
    canary_replicas: Annotated[int, typer.Option(help="canary pods")] = 1,
    window: Annotated[float, typer.Option(help="seconds to judge the canary")] = 300,
    max_window: Annotated[
        float | None,
        typer.Option(help="judge up to this long while traffic is short [default: --window]"),
    ] = None,
    min_requests: Annotated[int, typer.Option(help="requests each track needs")] = 100,
    error_margin: Annotated[float, typer.Option(help="5xx ratio the canary may add")] = 0.005,
    error_floor: Annotated[float, typer.Option(help="5xx ratio that never fails")] = 0.01,
    max_p99_ratio: Annotated[float, typer.Option(help="canary p99 / stable p99 allowed")] = 1.5,
    p99_floor_ms: Annotated[float, typer.Option(help="p99 that never fails, ms")] = 10.0,
    min_labelled: Annotated[int, typer.Option(help="labelled rows each track needs")] = 100,
    min_accuracy_delta: Annotated[
        float, typer.Option(help="live accuracy the canary may lose")
    ] = 0.02,
    image: Annotated[str | None, typer.Option(help="image (default: the build's tag)")] = None,
    replicas: Annotated[
        int | None,
        typer.Option(help="stable replicas [default: the stable's, else 2]"),
    ] = None,
    autoscale: Annotated[str | None, typer.Option(help="MIN:MAX replicas (HPA)")] = None,
    cpu: Annotated[str, typer.Option(help="CPU request")] = "500m",
    memory: Annotated[str, typer.Option(help="memory request")] = "512Mi",
    cpu_limit: Annotated[str, typer.Option(help="CPU limit")] = "2",
    memory_limit: Annotated[str, typer.Option(help="memory limit")] = "1Gi",
    gpu: Annotated[int, typer.Option(help="nvidia.com/gpu per pod")] = 0,
    state_secret: Annotated[
        str | None,
        typer.Option(help="Secret with the shared state URL [default: the stable's]"),
    ] = None,
    namespace: Annotated[
        str | None, typer.Option(help="namespace [default: modelfleet-ENV]")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="dry run: write manifests here")] = None,
    apply: Annotated[
        bool, typer.Option("--apply/--dry-run", help="run the release, or only show its plan")
    ] = False,
    kubeconfig: Annotated[
        Path | None, typer.Option(help="kubeconfig file [default: KUBECONFIG or ~/.kube/config]")
    ] = None,
    timeout: Annotated[float, typer.Option(help="timeout of each rollout, seconds")] = 300,
    build_image: Annotated[
        bool,
        typer.Option("--build", help="build the candidate's image first (local engine)"),
    ] = False,
    base: Annotated[
        str | None, typer.Option(help="with --build: base image [default: python3.11 slim]")
    ] = None,
    load_with: Annotated[
        str | None,
        typer.Option(
            help="command that makes the image available to the cluster, run with the image "
            "appended (e.g. 'kind load docker-image', 'podman push', a loader script)"
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Release NAME@ENV as a canary beside the stable; promote it or roll it back by its figures."""
    from modelfleet.deploy import (
        ReleasePlan,
        Thresholds,
        find_stable,
        parse_autoscale,
        run_release,
    )
    from modelfleet.kube import Cluster

    st = state(ctx)
    stage = parse_stage(env)
    ref = _stage_ref(name, stage)
    limits = Thresholds(
        min_requests=min_requests,
        error_margin=error_margin,
        error_floor=error_floor,
        max_p99_ratio=max_p99_ratio,
        p99_floor_ms=p99_floor_ms,
        min_labelled=min_labelled,
        accuracy_delta=min_accuracy_delta,
    )
    plan = ReleasePlan(canary_replicas, window, max_window, limits, timeout)
    with st.registry() as reg:
        version = reg.get(ref)
        profiled = reg.reference_profile(version) is not None
    spec = _spec(
        version,
        stage,
        profiled,
        image=image,
        namespace=namespace,
        replicas=2 if replicas is None else replicas,
        autoscale=parse_autoscale(autoscale),
        cpu=cpu,
        memory=memory,
        cpu_limit=cpu_limit,
        memory_limit=memory_limit,
        gpu=gpu,
        state_secret=state_secret,
    )
    if not apply:
        _dry_run(st, spec, plan, out, as_json)
        return
    cluster = Cluster.connect(kubeconfig)  # unreachable: fail before building anything
    if build_image:
        _build(st, version.ref, stage, spec.image, base, as_json)
    if load_with:
        _load(load_with, spec.image, as_json)
    stable = find_stable(cluster, spec.name, spec.ns)
    if stable is not None:  # a release changes the version, not the stable's size or state
        spec = dataclasses.replace(
            spec,
            replicas=spec.replicas if replicas is not None else stable.replicas or spec.replicas,
            state_secret=state_secret or stable.state_secret,
        )
    say = (lambda _: None) if as_json else (lambda line: console.print(line, markup=False))
    outcome = run_release(cluster, spec, stable, plan, say=say)
    if outcome.action != "unchanged":
        with st.registry() as reg:
            reg.record_event(version, stage, outcome.summary(), replaced=outcome.replaced)
    _show(outcome, f"{spec.ns}/{spec.name}", as_json)
    if not outcome.succeeded:
        raise DeployError(
            f"{version.ref} was not promoted; version "
            f"{outcome.stable.version if outcome.stable else '?'} still serves {spec.ns}",
            hint=f"see the verdict above; 'modelfleet history {version.name}' keeps it",
        )
