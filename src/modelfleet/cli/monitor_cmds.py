"""Monitoring commands: monitor rules (Prometheus alert rules), monitor dashboard (Grafana)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from modelfleet.cli.app import app, state
from modelfleet.cli.output import console, emit_json
from modelfleet.errors import ConfigError, ModelfleetError

JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
ModelOption = Annotated[str | None, typer.Option(help="only this model [default: every model]")]

monitor_app = typer.Typer(
    help="Alert rules and dashboards for served models.", no_args_is_help=True
)
app.add_typer(monitor_app, name="monitor")

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
    from modelfleet.deploy.crds import Metadata, PrometheusRule, PrometheusRuleSpec, RuleGroup
    from modelfleet.deploy.spec import k8s_name

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
    from modelfleet.monitor.rules import alert_rules, render_rules_file, render_yaml

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
        console.print(f"wrote {count} alert rules to {plain}")
        console.print(f"wrote PrometheusRule {resource['metadata']['name']} to {operator}")


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
    from modelfleet.monitor.dashboard import render_dashboard

    text = render_dashboard(model)
    name = f"{model or 'modelfleet'}-dashboard.json"
    path = out if out is not None and not out.is_dir() else _folder(ctx, out) / name
    _write(path, text)
    if as_json:
        emit_json({"dashboard": str(path)})
    else:
        console.print(f"wrote Grafana dashboard to {path}")
