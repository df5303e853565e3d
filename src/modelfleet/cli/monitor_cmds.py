"""Monitoring commands: monitor rules / dashboard / watch (retraining trigger), feedback."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from modelfleet.cli.context import state
from modelfleet.cli.output import JsonFlag, console, emit_json
from modelfleet.errors import ConfigError, ModelfleetError

# ``cli.app`` mounts ``app`` without a name (``feedback`` sits at the top of ``modelfleet``)
# and ``monitor_app`` as the ``monitor`` group.
app = typer.Typer()
monitor_app = typer.Typer(
    help="Alert rules and dashboards for served models.", no_args_is_help=True
)

ModelOption = Annotated[str | None, typer.Option(help="only this model [default: every model]")]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_YAML_SUFFIXES = (".yml", ".yaml")


def _folder(ctx: typer.Context, out: Path | None) -> Path:
    return out if out is not None else state(ctx).settings.home / "monitor"


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        raise ModelfleetError(
            f"cannot write {path}: {exc.strerror or exc}", hint="choose a writable --out"
        ) from exc


def _rule_paths(ctx: typer.Context, out: Path | None, stem: str) -> tuple[Path, Path]:
    """The plain rules file and the PrometheusRule file that ``--out`` names."""
    if out is not None and out.suffix in _YAML_SUFFIXES and not out.is_dir():
        return out, out.with_name(f"{out.stem}-prometheusrule{out.suffix}")
    folder = _folder(ctx, out)
    return folder / f"{stem}-rules.yml", folder / f"{stem}-prometheusrule.yaml"


def _labels(pairs: list[str]) -> dict[str, str]:
    labels = {"app.kubernetes.io/part-of": "modelfleet", "app.kubernetes.io/component": "alerts"}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not (sep and _LABEL_KEY.match(key) and _LABEL_VALUE.match(value)):
            raise ConfigError(
                f"invalid label {pair!r}",
                hint="write KEY=VALUE with a Kubernetes label key and value, e.g. release=prom",
            )
        labels[key] = value
    return labels


def _prometheus_rule(
    groups: list[dict[str, Any]], model: str | None, namespace: str, labels: dict[str, str]
) -> dict[str, Any]:
    from modelfleet.deploy import Metadata, PrometheusRule, PrometheusRuleSpec, RuleGroup
    from modelfleet.kube import k8s_name

    if not _DNS_LABEL.match(namespace):
        raise ConfigError(
            f"invalid namespace {namespace!r}",
            hint="use lower-case letters, digits and '-', at most 63 characters",
        )
    name = f"modelfleet-{k8s_name(model)}" if model else "modelfleet"
    resource = PrometheusRule(
        metadata=Metadata(name=name, namespace=namespace, labels=labels),
        spec=PrometheusRuleSpec(groups=[RuleGroup(**group) for group in groups]),
    )
    data: dict[str, Any] = resource.model_dump(by_alias=True, exclude_none=True)
    return data


@monitor_app.command("rules")
def rules(
    ctx: typer.Context,
    model: ModelOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="folder for both files, or FILE.yml for the rules file (the PrometheusRule "
            "goes beside it as FILE-prometheusrule.yml) [default: HOME/monitor]"
        ),
    ] = None,
    latency_p99_ms: Annotated[float, typer.Option(help="p99 latency target, ms")] = 100.0,
    error_ratio: Annotated[
        float, typer.Option(help="share of 5xx answers above this alerts")
    ] = 0.01,
    queue_depth: Annotated[float, typer.Option(help="queued requests above this alert")] = 100.0,
    drift_score: Annotated[float, typer.Option(help="a feature's PSI above this alerts")] = 0.2,
    min_accuracy: Annotated[float, typer.Option(help="live accuracy below this alerts")] = 0.8,
    min_feedback: Annotated[
        int, typer.Option(help="feedback labels needed before accuracy can alert")
    ] = 30,
    duration: Annotated[
        str, typer.Option("--for", help="how long a condition holds before it alerts")
    ] = "5m",
    namespace: Annotated[str, typer.Option(help="namespace of the PrometheusRule")] = "monitoring",
    label: Annotated[
        list[str] | None,
        typer.Option(
            help="extra PrometheusRule label KEY=VALUE, e.g. for the operator's "
            "ruleSelector (repeatable)"
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Write the alert rules as a Prometheus rules file and as a PrometheusRule resource."""
    from modelfleet.monitor import alert_rules, render_rules_file, render_yaml

    groups = alert_rules(
        model,
        latency_p99_ms=latency_p99_ms,
        error_ratio=error_ratio,
        queue_depth=queue_depth,
        drift_score=drift_score,
        min_accuracy=min_accuracy,
        min_feedback=min_feedback,
        duration=duration,
    )
    resource = _prometheus_rule(groups, model, namespace, _labels(label or []))
    plain, operator = _rule_paths(ctx, out, model or "modelfleet")
    _write(plain, render_rules_file(groups))
    _write(operator, render_yaml(resource))
    if as_json:
        emit_json({"rules": str(plain), "prometheusrule": str(operator)})
    else:
        count = sum(len(g["rules"]) for g in groups)
        console.print(f"wrote {count} alert rules to {plain}", markup=False)
        console.print(
            f"wrote PrometheusRule {resource['metadata']['name']} to {operator}", markup=False
        )


@monitor_app.command("dashboard")
def dashboard(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option(help="dashboard JSON file, or a folder for it [default: HOME/monitor]"),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="preselect this model [default: every model]")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Write a Grafana dashboard of every served-model metric (import it or provision it)."""
    from modelfleet.monitor import render_dashboard

    text = render_dashboard(model)
    name = f"{model or 'modelfleet'}-dashboard.json"
    path = out if out is not None and not out.is_dir() else _folder(ctx, out) / name
    _write(path, text)
    if as_json:
        emit_json({"dashboard": str(path)})
    else:
        console.print(f"wrote Grafana dashboard to {path}", markup=False)


TokenOption = Annotated[
    str | None, typer.Option(envvar="MODELFLEET_TOKEN", help="bearer token of the server")
]


@monitor_app.command("watch")
def watch(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="the server, e.g. http://127.0.0.1:8080")],
    model: Annotated[
        list[str] | None, typer.Option(help="watch only this model (repeatable)")
    ] = None,
    min_accuracy: Annotated[
        float, typer.Option(help="retrain when live accuracy stays below this")
    ] = 0.8,
    max_psi: Annotated[
        float, typer.Option(help="retrain when a feature's drift (PSI) stays above this")
    ] = 0.2,
    min_labels: Annotated[
        int, typer.Option(help="labelled requests needed before accuracy counts")
    ] = 20,
    sustain: Annotated[
        float, typer.Option("--for", help="seconds a breach must last before retraining")
    ] = 300.0,
    cooldown: Annotated[
        float, typer.Option(help="seconds before the same model may be retrained again")
    ] = 3600.0,
    interval: Annotated[float, typer.Option(help="seconds between polls")] = 10.0,
    rounds: Annotated[
        int | None, typer.Option(help="stop after this many polls [default: run until Ctrl-C]")
    ] = None,
    auto_retrain: Annotated[
        bool,
        typer.Option(
            "--auto-retrain", help="submit the training job (default: only say what would be)"
        ),
    ] = False,
    backend: Annotated[
        str, typer.Option(help="where retraining jobs run: local or kubernetes")
    ] = "local",
    image: Annotated[
        str | None,
        typer.Option(help="kubernetes: trainer image [default: 'build --trainer' tag]"),
    ] = None,
    release: Annotated[
        str | None,
        typer.Option(
            help="when a retrained version passes its gate, promote it to this stage and "
            "release it there as a canary ('modelfleet release NAME --env STAGE --apply')"
        ),
    ] = None,
    release_window: Annotated[
        float, typer.Option(help="with --release: seconds the canary is judged")
    ] = 300.0,
    retrain_param: Annotated[
        list[str] | None,
        typer.Option(
            help="KEY=VALUE the retraining run uses instead of the served version's own "
            "(repeatable), e.g. a newer data snapshot"
        ),
    ] = None,
    release_arg: Annotated[
        list[str] | None,
        typer.Option(
            help="with --release: one more option for 'modelfleet release' (repeatable), "
            "e.g. --release-arg=--build --release-arg='--load-with=kind load docker-image'"
        ),
    ] = None,
    kubeconfig: Annotated[
        Path | None, typer.Option(help="kubeconfig file [default: KUBECONFIG or ~/.kube/config]")
    ] = None,
    token: TokenOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Watch a server; queue a model's training pipeline when it stays inaccurate or drifted.

    With --auto-retrain the job is submitted (--backend kubernetes: as a Job on the pipeline's
    trainer image) and followed; with --release STAGE too, a version that passes the
    pipeline's gate is promoted to STAGE and released there as a canary.
    """
    import time

    from modelfleet.client import Client
    from modelfleet.monitor import RetrainChain, RetrainPolicy, RetrainTrigger
    from modelfleet.refs import parse_stage

    if min(interval, sustain, cooldown) < 0 or not 0 <= min_accuracy <= 1 or max_psi < 0:
        raise ConfigError(
            "invalid watch settings",
            hint="--interval/--for/--cooldown >= 0, 0 <= --min-accuracy <= 1, --max-psi >= 0",
        )
    policy = RetrainPolicy(
        min_accuracy=min_accuracy,
        max_psi=max_psi,
        min_labels=min_labels,
        sustain_s=sustain,
        cooldown_s=cooldown,
    )
    if release is not None and not auto_retrain:
        raise ConfigError(
            "--release needs --auto-retrain", hint="add --auto-retrain (a dry run submits nothing)"
        )
    release_to = parse_stage(release) if release is not None else None
    chain = RetrainChain(
        state(ctx).settings,
        backend=backend,
        image=image,
        kubeconfig=kubeconfig,
        release_to=release_to,
    )
    from modelfleet.pipeline import parse_params

    trigger = RetrainTrigger(
        policy,
        state(ctx).settings,
        auto=auto_retrain,
        models=set(model) if model else None,
        chain=chain,
        overrides=parse_params(retrain_param or []),
    )
    mode = "submits retraining jobs" if auto_retrain else "dry run: reports what it would submit"
    if not as_json:
        console.print(f"watching {url} every {interval:g} s ({mode})", markup=False)
    done = 0
    with Client(url, token=token) as client:
        while rounds is None or done < rounds:
            if done:
                time.sleep(interval)
            done += 1
            try:
                summary = client.summary()
            except ModelfleetError as exc:
                if done == 1:
                    raise  # a wrong URL or token should fail at once
                console.print(f"[yellow]poll failed, retrying: {escape(str(exc))}[/]")
                continue
            for decision in trigger.observe(summary):
                if as_json:
                    emit_json(
                        {
                            "model": decision.model,
                            "version": decision.version,
                            "reason": decision.reason,
                            "pipeline": decision.pipeline,
                            "params": decision.params,
                            "submitted": decision.submitted,
                            "job": decision.job_id,
                            "problem": decision.problem,
                        }
                    )
                else:
                    # One decision, one line: the command in it is meant to be copied.
                    console.print(
                        decision.describe(), markup=False, highlight=False, soft_wrap=True
                    )
            for event in chain.poll():
                _follow(
                    event,
                    [f"--window={release_window:g}", *(release_arg or [])],
                    kubeconfig,
                    as_json,
                )


def _follow(event: Any, options: list[str], kubeconfig: Path | None, as_json: bool) -> None:
    """Say what a followed job came to; release a promoted version as a canary."""
    import json
    import subprocess
    import sys

    released: int | None = None
    if event.kind == "promoted":
        command = [sys.executable, "-m", "modelfleet", "release", event.model]
        command += ["--env", event.stage.value, "--apply", *options]
        if kubeconfig is not None:
            command += ["--kubeconfig", str(kubeconfig)]
        if not as_json:
            console.print(f"{event.message}; releasing it as a canary", markup=False)
        # Its own process: the release prints its verdict as it goes and exits 1 when the
        # canary is rolled back; the watch goes on either way. With --json its document is
        # carried inside the event's, so the watch's output stays one JSON document per event.
        done = subprocess.run(
            [*command, "--json"] if as_json else command,
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if as_json else None,
            text=True,
        )
        released = done.returncode
    if as_json:
        verdict: Any = None
        if released is not None:
            try:
                verdict = json.loads(done.stdout)
            except ValueError:
                verdict = done.stdout.strip()[-2000:] or None
        emit_json(
            {
                "job": event.job_id,
                "model": event.model,
                "outcome": event.kind,
                "version": event.ref,
                "message": event.message,
                "release_exit_code": released,
                "release": verdict,
            }
        )
    elif released is None:
        console.print(event.message, markup=False, highlight=False, soft_wrap=True)
    else:
        verdict = "promoted" if released == 0 else "not promoted (see the verdict above)"
        console.print(f"release of {event.ref}: {verdict}", markup=False)


def _label_value(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text  # a bare word is a text label


def _feedback_file(path: Path) -> list[tuple[str, Any]]:
    import csv
    import json

    if not path.is_file():
        raise ConfigError(f"feedback file {path} does not exist", hint="check --file")
    pairs: list[tuple[str, Any]] = []
    try:
        if path.suffix == ".jsonl":
            for line in path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    pairs.append((str(row["request_id"]), row["label"]))
        else:
            with path.open(newline="") as handle:
                for row in csv.DictReader(handle):
                    pairs.append((row["request_id"], _label_value(row["label"])))
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"{path} is not valid feedback: {type(exc).__name__}: {exc}",
            hint="write CSV with columns request_id,label (or JSON lines with those keys)",
        ) from exc
    return pairs


@app.command("feedback")
def feedback(
    name: Annotated[str, typer.Argument(help="the served model")],
    labels: Annotated[
        list[str] | None,
        typer.Argument(help='REQUEST_ID=LABEL pairs; LABEL is JSON (7, "yes", [0, 2]) or a word'),
    ] = None,
    url: Annotated[str, typer.Option(help="the server")] = "http://127.0.0.1:8080",
    file: Annotated[
        Path | None,
        typer.Option(help="CSV (request_id,label) or JSON lines with the labels to send"),
    ] = None,
    token: TokenOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Send the true labels of answered requests; prints the model's live accuracy."""
    from modelfleet.client import Client

    pairs = _feedback_file(file) if file is not None else []
    for pair in labels or []:
        rid, sep, value = pair.partition("=")
        if not sep or not rid:
            raise ConfigError(f"invalid label {pair!r}", hint="write REQUEST_ID=LABEL")
        pairs.append((rid, _label_value(value)))
    if not pairs:
        raise ConfigError("no labels given", hint="pass REQUEST_ID=LABEL pairs or --file")
    with Client(url, token=token) as client:
        result = client.feedback(name, [p[0] for p in pairs], [p[1] for p in pairs])
    if as_json:
        emit_json(result)
        return
    live = result["live_accuracy"]
    value = "n/a" if live["value"] is None else f"{live['value']:.4f}"
    console.print(
        f"{result['accepted']} labelled requests ({result['correct']}/{result['rows']} rows "
        f"right); {name}:{live['version']} live accuracy {value} over the last "
        f"{live['labelled_requests']} labelled requests; cache {result['cache']}"
    )
