"""Alert rules: promtool accepts them, and each alert fires exactly when it should.

promtool's unit tests replay hand-made series through the rules file the CLI wrote: for every
alert, series that must fire it (one model, "churn") sit beside series that must not (other
models: fast, idle, healthy, too little feedback …), and an early evaluation proves ``for``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from modelfleet.cli import main
from tests.prometheus import promtool

SCRAPE = {"job": "modelfleet", "instance": "10.0.0.1:8080"}
Alert = dict[str, dict[str, str]]


def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    """One promtool input series: ``metric{labels}`` with expanding notation values."""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted({**SCRAPE, **labels}.items()))
    return {"series": f"{metric}{{{inner}}}", "values": values}


def alert(severity: str, summary: str, description: str, **labels: str) -> Alert:
    return {
        "exp_labels": {"severity": severity, **labels},
        "exp_annotations": {"summary": summary, "description": description},
    }


@dataclass(frozen=True)
class Case:
    """Input series and, per evaluation time, exactly the alerts that must be firing."""

    alert: str
    series: list[dict[str, str]]
    expected: dict[str, list[Alert]] = field(default_factory=dict)

    def only(self, model: str | None) -> dict[str, list[Alert]]:
        if model is None:
            return self.expected
        return {
            at: [a for a in alerts if a["exp_labels"].get("model") == model]
            for at, alerts in self.expected.items()
        }


def _buckets(model: str, version: str, per_minute: dict[str, str]) -> list[dict[str, str]]:
    return [
        series(
            "modelfleet_request_duration_seconds_bucket",
            values,
            model=model,
            version=version,
            endpoint="v2",
            le=le,
        )
        for le, values in per_minute.items()
    ]


def _latency_series() -> list[dict[str, str]]:
    busy = "0+60x20"  # one request per second
    return [
        # churn answers in 0.1-0.5 s: p99 interpolates to 0.496 s
        *_buckets("churn", "3", {"0.05": "0x20", "0.1": "0x20", "0.5": busy, "+Inf": busy}),
        # fast answers under 50 ms: p99 0.0495 s
        *_buckets("fast", "1", {"0.05": busy, "0.1": busy, "0.5": busy, "+Inf": busy}),
        # idle had slow requests long ago and none now: no quantile at all
        *_buckets("idle", "1", {"0.05": "0x20", "0.1": "0x20", "0.5": "5x20", "+Inf": "5x20"}),
    ]


LATENCY = Case(
    "ModelfleetHighLatency",
    _latency_series(),
    {
        "4m": [],
        "10m": [
            alert(
                "warning",
                "churn:3 p99 latency above 100 ms",
                "p99 is 496ms over the last 5 minutes.",
                model="churn",
                version="3",
            )
        ],
    },
)


def _requests(model: str, version: str, status: str, values: str) -> dict[str, str]:
    endpoint = "v1" if status == "503" else "v2"  # both endpoints count
    metric = "modelfleet_requests_total"
    return series(metric, values, model=model, version=version, endpoint=endpoint, status=status)


ERRORS = Case(
    "ModelfleetErrorRatio",
    [
        _requests("churn", "3", "200", "0+60x20"),
        _requests("churn", "3", "503", "0+6x20"),
        # 0.5 % server errors: under the 1 % line
        _requests("steady", "1", "200", "0+600x20"),
        _requests("steady", "1", "500", "0+3x20"),
        # half the requests are refused with 400: the client's fault, not the server's
        _requests("picky", "1", "200", "0+60x20"),
        _requests("picky", "1", "400", "0+60x20"),
        # no traffic in the window: nothing to divide
        _requests("idle", "1", "200", "7x20"),
        _requests("idle", "1", "503", "2x20"),
    ],
    {
        "4m": [],
        "10m": [
            alert(
                "critical",
                "churn:3 more than 1% of requests fail",
                "Server errors (5xx) are 9.091% of requests.",
                model="churn",
                version="3",
            )
        ],
    },
)

QUEUE = Case(
    "ModelfleetQueueSaturated",
    [
        series("modelfleet_queue_depth", "150x20", model="churn"),
        series("modelfleet_queue_depth", "20x20", model="churn", instance="10.0.0.2:8080"),
        series("modelfleet_queue_depth", "40x20", model="calm"),
        # bursts that drain within minutes never last the 5 minutes an alert needs
        series("modelfleet_queue_depth", " ".join(["0 0 500"] * 7), model="bursty"),
    ],
    {
        "4m": [],
        "10m": [
            alert(
                "warning",
                "churn queue above 100 requests",
                "150 requests wait; add replicas or lower the load, full queues answer 503.",
                model="churn",
            )
        ],
    },
)


def _drift(model: str, version: str, feature: str, method: str, values: str) -> dict[str, str]:
    metric = "modelfleet_drift_score"
    return series(metric, values, model=model, version=version, feature=feature, method=method)


DRIFT = Case(
    "ModelfleetDrift",
    [
        _drift("churn", "3", "tenure", "psi", "0.35x20"),
        _drift("churn", "3", "age", "psi", "0.05x20"),
        # KS is on its own scale: 0.9 there says nothing about the PSI threshold
        _drift("churn", "3", "age", "ks", "0.9x20"),
        _drift("stable", "1", "tenure", "psi", "0.1x20"),
    ],
    {
        "4m": [],
        "10m": [
            alert(
                "warning",
                "churn:3 input drift on tenure",
                "PSI 0.35 against the training profile (alerts above 0.2).",
                model="churn",
                version="3",
                feature="tenure",
            )
        ],
    },
)


def _accuracy(
    model: str, version: str, accuracy: str, correct: str, wrong: str
) -> list[dict[str, str]]:
    out = [series("modelfleet_live_accuracy", accuracy, model=model, version=version)]
    for result, values in (("correct", correct), ("wrong", wrong)):
        if values:
            labels = {"model": model, "version": version, "result": result}
            out.append(series("modelfleet_feedback_total", values, **labels))
    return out


ACCURACY = Case(
    "ModelfleetLowAccuracy",
    [
        *_accuracy("churn", "3", "0.6x20", "60x20", "40x20"),
        # four labels are too few to judge a model by
        *_accuracy("fresh", "1", "0.5x20", "2x20", "2x20"),
        *_accuracy("good", "1", "0.95x20", "95x20", "5x20"),
        # a gauge at 0 with no feedback at all
        *_accuracy("unlabelled", "1", "0x20", "", ""),
    ],
    {
        "4m": [],
        "10m": [
            alert(
                "critical",
                "churn:3 live accuracy under 0.8",
                "Accuracy from feedback labels is 0.6; consider retraining.",
                model="churn",
                version="3",
            )
        ],
    },
)


def _load_failed(model: str) -> Alert:
    return alert(
        "warning",
        f"{model}: a model load or hot swap failed",
        "The previous version keeps serving; see the server log.",
        model=model,
        **SCRAPE,
    )


# Evaluations start half an hour in, so Prometheus has the history it has in production: a
# counter it has never seen before it reads as new, and a non-zero new counter alerts.
LOAD = Case(
    "ModelfleetLoadFailures",
    [
        # counted from 0, a hot swap fails at minute 30
        series("modelfleet_model_load_failures_total", "0x29 1x30", model="churn"),
        # the counter's first sample is its first failure (no 0 before it)
        series("modelfleet_model_load_failures_total", "_x30 1x29", model="fresh"),
        # failures from long ago are old news
        series("modelfleet_model_load_failures_total", "2x59", model="old"),
    ],
    {"29m": [], "32m": [_load_failed("churn"), _load_failed("fresh")], "50m": []},
)

CASES = [LATENCY, ERRORS, QUEUE, DRIFT, ACCURACY, LOAD]


def write_rules(folder: Path, *options: str) -> Path:
    """``modelfleet monitor rules --out FOLDER/rules.yml OPTIONS``; returns the rules file."""
    path = folder / "rules.yml"
    assert main(["monitor", "rules", "--out", str(path), *options]) == 0
    return path


def unit_test(rules: Path, cases: list[tuple[Case, dict[str, list[Alert]]]]) -> tuple[int, str]:
    """Run ``promtool test rules`` on ``cases`` against ``rules``; exit code and output."""
    tests = [
        {
            "interval": "1m",
            "input_series": case.series,
            "alert_rule_test": [
                {"eval_time": at, "alertname": case.alert, "exp_alerts": alerts}
                for at, alerts in expected.items()
            ],
        }
        for case, expected in cases
    ]
    document = {"rule_files": [rules.name], "evaluation_interval": "1m", "tests": tests}
    path = rules.parent / "rules_test.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    result = promtool("test", "rules", path.name, cwd=rules.parent)
    output = result.stdout + result.stderr
    print(output)
    return result.returncode, output


def test_promtool_accepts_the_rules_file(tmp_path: Path) -> None:
    rules = write_rules(tmp_path)
    result = promtool("check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout
    groups = yaml.safe_load(rules.read_text())["groups"]
    assert [r["alert"] for r in groups[0]["rules"]] == [case.alert for case in CASES]


@pytest.mark.parametrize("model", [None, "churn"], ids=["all-models", "one-model"])
@pytest.mark.parametrize("case", CASES, ids=[case.alert for case in CASES])
def test_each_alert_fires_on_bad_series_and_stays_quiet_otherwise(
    tmp_path: Path, case: Case, model: str | None
) -> None:
    rules = write_rules(tmp_path, *(["--model", model] if model else []))
    code, output = unit_test(rules, [(case, case.only(model))])
    assert code == 0, output
    assert "SUCCESS" in output


def test_promtool_reports_an_alert_that_does_not_fire(tmp_path: Path) -> None:
    """The harness can fail: expecting the fast model to alert at 100 ms is wrong."""
    rules = write_rules(tmp_path)
    wrong = {"10m": [*LATENCY.expected["10m"], alert("warning", "x", "y", model="fast")]}
    code, output = unit_test(rules, [(LATENCY, wrong)])
    assert code == 1
    assert "FAILED" in output and "ModelfleetHighLatency" in output


def test_thresholds_from_the_command_line_move_the_lines(tmp_path: Path) -> None:
    lenient = write_rules(tmp_path, "--latency-p99-ms", "500", "--error-ratio", "0.2")
    quiet = {"10m": []}
    code, output = unit_test(lenient, [(LATENCY, quiet), (ERRORS, quiet)])
    assert code == 0, output
    strict = write_rules(tmp_path, "--latency-p99-ms", "40", "--for", "1m")
    both = {
        "3m": [
            alert(
                "warning",
                "churn:3 p99 latency above 40 ms",
                "p99 is 496ms over the last 5 minutes.",
                model="churn",
                version="3",
            ),
            alert(
                "warning",
                "fast:1 p99 latency above 40 ms",
                "p99 is 49.5ms over the last 5 minutes.",
                model="fast",
                version="1",
            ),
        ]
    }
    code, output = unit_test(strict, [(LATENCY, both)])
    assert code == 0, output


def test_prometheus_rule_resource_carries_the_same_rules(tmp_path: Path) -> None:
    code = main(
        [
            "monitor",
            "rules",
            "--model",
            "Churn_Model",
            "--out",
            str(tmp_path),
            "--namespace",
            "observability",
            "--label",
            "release=kube-prometheus",
        ]
    )
    assert code == 0
    plain = yaml.safe_load((tmp_path / "Churn_Model-rules.yml").read_text())
    resource = yaml.safe_load((tmp_path / "Churn_Model-prometheusrule.yaml").read_text())
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["kind"] == "PrometheusRule"
    assert resource["metadata"] == {
        "name": "modelfleet-churn-model-431ffbc9",
        "namespace": "observability",
        "labels": {
            "app.kubernetes.io/part-of": "modelfleet",
            "app.kubernetes.io/component": "alerts",
            "release": "kube-prometheus",
        },
    }
    assert set(resource) == {"apiVersion", "kind", "metadata", "spec"}
    assert resource["spec"] == plain
    assert all('model="Churn_Model"' in r["expr"] for r in plain["groups"][0]["rules"])
    # The operator hands spec.groups to Prometheus as a rules file: promtool must accept it.
    extracted = tmp_path / "from-resource.yml"
    extracted.write_text(yaml.safe_dump(resource["spec"]))
    result = promtool("check", "rules", str(extracted))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--error-ratio", "1.5"], "invalid error ratio 1.5"),
        (["--latency-p99-ms", "0"], "invalid p99 latency 0.0"),
        (["--min-accuracy", "nan"], "invalid minimum accuracy nan"),
        (["--min-feedback", "0"], "invalid minimum feedback 0"),
        (["--for", "5"], "invalid alert duration '5'"),
        (["--model", "no spaces"], "invalid model reference 'no spaces'"),
        (["--namespace", "Upper"], "invalid namespace 'Upper'"),
        (["--label", "release"], "invalid label 'release'"),
    ],
)
def test_bad_input_is_one_clear_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    code = main(["monitor", "rules", "--out", str(tmp_path / "out"), *options])
    err = capsys.readouterr().err
    assert code == 1
    assert message in " ".join(err.split())
    assert not (tmp_path / "out").exists()


def test_unwritable_output_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["monitor", "rules", "--out", str(blocker / "rules")])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 1
    assert f"cannot write {blocker}/rules/modelfleet-rules.yml" in err
    assert "choose a writable --out" in err
