"""The Grafana dashboard of served models, built with Grafana's foundation SDK.

Every panel queries the metrics the server exports (``modelfleet_*``) through two template
variables: ``datasource`` (any Prometheus) and ``model`` (one, several or all models).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelfleet.errors import MissingDependencyError
from modelfleet.refs import validate_name

if TYPE_CHECKING:
    from grafana_foundation_sdk.cog.builder import Builder
    from grafana_foundation_sdk.models.dashboard import DataSourceRef, Panel, VariableModel

_MODEL = 'model=~"$model"'
_WINDOW = "$__rate_interval"
_PER_VERSION = "{{model}}:{{version}}"


@dataclass(frozen=True)
class Query:
    """One PromQL expression and the legend of its series."""

    expr: str
    legend: str = _PER_VERSION
    table: bool = False


@dataclass(frozen=True)
class PanelSpec:
    """What one panel shows; ``kind`` is a Grafana panel type."""

    title: str
    unit: str
    queries: tuple[Query, ...]
    description: str = ""
    kind: str = "timeseries"
    width: int = 12
    bounds: tuple[float, float] | None = None


def _rate(metric: str, by: str, extra: str = "") -> str:
    sel = f"{_MODEL},{extra}" if extra else _MODEL
    return f"sum by ({by}) (rate({metric}{{{sel}}}[{_WINDOW}]))"


def _ratio(metric: str, part: str) -> str:
    """Share of ``metric``'s rate matching ``part``: 0 when none match, nothing when idle."""
    whole = _rate(metric, "model, version")
    return f"({_rate(metric, 'model, version', part)} or 0 * {whole}) / ({whole} > 0)"


def _quantiles(metric: str) -> tuple[Query, ...]:
    by = "model, version, le"
    return tuple(
        Query(
            f"histogram_quantile({q}, {_rate(f'{metric}_bucket', by)})",
            f"{_PER_VERSION} p{round(q * 100)}",
        )
        for q in (0.5, 0.99)
    )


def _mean(metric: str, legend: str) -> Query:
    by = "model, version"
    return Query(f"{_rate(f'{metric}_sum', by)} / {_rate(f'{metric}_count', by)}", legend)


ROWS: tuple[tuple[str, tuple[PanelSpec, ...]], ...] = (
    (
        "Traffic",
        (
            PanelSpec(
                "Requests per second",
                "reqps",
                (
                    Query(
                        _rate("modelfleet_requests_total", "model, version, endpoint, status"),
                        f"{_PER_VERSION} {{{{endpoint}}}} {{{{status}}}}",
                    ),
                ),
            ),
            PanelSpec(
                "Error ratio (5xx)",
                "percentunit",
                (Query(_ratio("modelfleet_requests_total", 'status=~"5.."')),),
                "Share of requests answered with a server error (overload, deadline, failure).",
                bounds=(0, 1),
            ),
            PanelSpec(
                "Request latency",
                "s",
                _quantiles("modelfleet_request_duration_seconds"),
                "End to end, from the request's arrival to its response.",
            ),
            PanelSpec(
                "In-flight requests",
                "short",
                (Query(f"sum by (model) (modelfleet_inflight_requests{{{_MODEL}}})", "{{model}}"),),
            ),
        ),
    ),
    (
        "Queueing and batching",
        (
            PanelSpec(
                "Queue wait",
                "s",
                _quantiles("modelfleet_queue_wait_seconds"),
                "From enqueue to the start of the request's batch.",
            ),
            PanelSpec(
                "Inference time per batch",
                "s",
                _quantiles("modelfleet_inference_duration_seconds"),
                "ONNX Runtime time of one batch.",
            ),
            PanelSpec(
                "Batch size",
                "short",
                (
                    _mean("modelfleet_batch_rows", f"{_PER_VERSION} rows"),
                    _mean("modelfleet_batch_requests", f"{_PER_VERSION} requests"),
                ),
                "Mean rows and requests merged into one ONNX Runtime call.",
            ),
            PanelSpec(
                "Queue depth",
                "short",
                (Query(f"sum by (model) (modelfleet_queue_depth{{{_MODEL}}})", "{{model}}"),),
                "Requests waiting; a full queue answers 503.",
            ),
        ),
    ),
    (
        "Cache and model loading",
        (
            PanelSpec(
                "Cache hit ratio",
                "percentunit",
                (Query(_ratio("modelfleet_cache_lookups_total", 'result="hit"')),),
                "Share of cache lookups answered from the cache.",
                bounds=(0, 1),
            ),
            PanelSpec(
                "Cache enabled",
                "bool_on_off",
                (Query(f"max by (model, version) (modelfleet_cache_enabled{{{_MODEL}}})"),),
                "The cache is on only for models accurate enough to be cached.",
                kind="stat",
            ),
            PanelSpec(
                "Model load time (mean since start)",
                "s",
                (
                    Query(
                        f"sum by (model) (modelfleet_model_load_duration_seconds_sum{{{_MODEL}}})"
                        " / sum by (model) "
                        f"(modelfleet_model_load_duration_seconds_count{{{_MODEL}}})",
                        "{{model}}",
                    ),
                ),
            ),
            PanelSpec(
                "Failed loads and hot swaps (since start)",
                "short",
                (
                    Query(
                        f"sum by (model) (modelfleet_model_load_failures_total{{{_MODEL}}})",
                        "{{model}}",
                    ),
                ),
            ),
            PanelSpec(
                "Served versions",
                "short",
                (
                    Query(
                        "max by (model, version, variant, sha256) "
                        f"(modelfleet_model_info{{{_MODEL}}})",
                        table=True,
                    ),
                ),
                kind="table",
                width=24,
            ),
        ),
    ),
    (
        "Model quality",
        (
            PanelSpec(
                "Predictions per class",
                "ops",
                (
                    Query(
                        _rate("modelfleet_predictions_total", "model, version, class"),
                        f"{_PER_VERSION} {{{{class}}}}",
                    ),
                ),
            ),
            PanelSpec(
                "Live accuracy",
                "percentunit",
                (Query(f"min by (model, version) (modelfleet_live_accuracy{{{_MODEL}}})"),),
                "Rolling accuracy from feedback labels.",
                bounds=(0, 1),
            ),
            PanelSpec(
                "Input drift (PSI)",
                "short",
                (
                    Query(
                        "max by (model, version, feature) "
                        f'(modelfleet_drift_score{{{_MODEL},method="psi"}})',
                        f"{_PER_VERSION} {{{{feature}}}}",
                    ),
                ),
                "Population stability index against the training profile: "
                "under 0.1 stable, over 0.2 a real shift.",
            ),
            PanelSpec(
                "Input drift (KS)",
                "short",
                (
                    Query(
                        "max by (model, version, feature) "
                        f'(modelfleet_drift_score{{{_MODEL},method="ks"}})',
                        f"{_PER_VERSION} {{{{feature}}}}",
                    ),
                ),
                "Kolmogorov-Smirnov statistic against the training sample (0 = same).",
                bounds=(0, 1),
            ),
            PanelSpec(
                "Feedback labels per second",
                "ops",
                (
                    Query(
                        _rate("modelfleet_feedback_total", "model, version, result"),
                        f"{_PER_VERSION} {{{{result}}}}",
                    ),
                ),
                width=24,
            ),
        ),
    ),
)


def _require_sdk() -> None:
    try:
        import grafana_foundation_sdk  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "grafana-foundation-sdk", "monitor", purpose="generate the Grafana dashboard"
        ) from exc


def _panel(spec: PanelSpec, panel_id: int, datasource: DataSourceRef) -> Builder[Panel]:
    from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
    from grafana_foundation_sdk.models.prometheus import PromQueryFormat

    kinds: dict[str, type[timeseries.Panel | stat.Panel | table.Panel]] = {
        "timeseries": timeseries.Panel,
        "stat": stat.Panel,
        "table": table.Panel,
    }
    panel = kinds[spec.kind]().id(panel_id).title(spec.title).datasource(datasource)
    panel = panel.unit(spec.unit).height(8).span(spec.width)
    if spec.description:
        panel = panel.description(spec.description)
    if spec.bounds is not None:
        panel = panel.min(spec.bounds[0]).max(spec.bounds[1])
    for ref, query in zip("ABCDEFGH", spec.queries, strict=False):
        target = prometheus.Dataquery().ref_id(ref).datasource(datasource).expr(query.expr)
        if query.table:
            target = target.instant().format(PromQueryFormat.TABLE)
        else:
            target = target.range().legend_format(query.legend)
        panel = panel.with_target(target)
    return panel


def _variables(datasource: DataSourceRef, model: str | None) -> list[Builder[VariableModel]]:
    from grafana_foundation_sdk.builders.dashboard import DatasourceVariable, QueryVariable
    from grafana_foundation_sdk.models.dashboard import VariableOption, VariableRefresh

    models = (
        QueryVariable("model")
        .label("model")
        .datasource(datasource)
        .query("label_values(modelfleet_model_info, model)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )
    if model is not None:
        models = models.current(VariableOption(selected=True, text=model, value=model))
    return [DatasourceVariable("datasource").label("data source").type("prometheus"), models]


def build_dashboard(model: str | None = None) -> dict[str, Any]:
    """The dashboard as JSON-ready data; ``model`` is preselected and names it."""
    _require_sdk()
    from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    if model is not None:
        validate_name(model)
    datasource = DataSourceRef(type_val="prometheus", uid="${datasource}")
    # Grafana uids are at most 40 letters, digits, '-' and '_'.
    uid = f"modelfleet-{model.replace('.', '-')}"[:40] if model else "modelfleet"
    builder = (
        Dashboard(f"modelfleet: {model}" if model else "modelfleet")
        .uid(uid)
        .description("Traffic, latency, queueing, cache, loading and quality of served models.")
        .tags(["modelfleet"])
        .refresh("30s")
        .time("now-1h", "now")
        .variables(_variables(datasource, model))
    )
    panel_id = 0
    for title, panels in ROWS:
        panel_id += 1
        builder = builder.with_row(Row(title).id(panel_id))
        for spec in panels:
            panel_id += 1
            builder = builder.with_panel(_panel(spec, panel_id, datasource))
    data: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return data


def render_dashboard(model: str | None = None) -> str:
    """The dashboard JSON text, ready for Grafana's import or provisioning."""
    return json.dumps(build_dashboard(model), indent=2) + "\n"
