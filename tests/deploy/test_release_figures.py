"""A window's figures from pods' expositions: restarts and new pods count from zero, p99
comes from the histogram's buckets, and a page that is not an exposition is refused."""

from __future__ import annotations

import math

import pytest

from modelfleet.deploy import Figures, judge
from modelfleet.deploy.figures import Counters, quantile, read_exposition, window_counters
from modelfleet.errors import DeployError

EXPOSITION = """\
# HELP modelfleet_requests_total Requests by model, version, endpoint and status.
# TYPE modelfleet_requests_total counter
modelfleet_requests_total{endpoint="v2",model="churn",status="200",version="4"} 90.0
modelfleet_requests_total{endpoint="v1",model="churn",status="200",version="4"} 5.0
modelfleet_requests_total{endpoint="v2",model="churn",status="503",version="4"} 3.0
modelfleet_requests_total{endpoint="v2",model="churn",status="400",version="4"} 2.0
modelfleet_requests_total{endpoint="v2",model="churn",status="200",version="3"} 70.0
modelfleet_requests_total{endpoint="v2",model="other",status="500",version="4"} 9.0
# HELP modelfleet_request_duration_seconds End-to-end request latency.
# TYPE modelfleet_request_duration_seconds histogram
modelfleet_request_duration_seconds_bucket{endpoint="v2",le="0.01",model="churn",version="4"} 60.0
modelfleet_request_duration_seconds_bucket{endpoint="v2",le="0.1",model="churn",version="4"} 95.0
modelfleet_request_duration_seconds_bucket{endpoint="v2",le="+Inf",model="churn",version="4"} 95.0
modelfleet_request_duration_seconds_bucket{endpoint="v1",le="0.01",model="churn",version="4"} 5.0
modelfleet_request_duration_seconds_bucket{endpoint="v1",le="0.1",model="churn",version="4"} 5.0
modelfleet_request_duration_seconds_bucket{endpoint="v1",le="+Inf",model="churn",version="4"} 5.0
# HELP modelfleet_feedback_total Labelled rows received as feedback, by result.
# TYPE modelfleet_feedback_total counter
modelfleet_feedback_total{model="churn",result="correct",version="4"} 40.0
modelfleet_feedback_total{model="churn",result="wrong",version="4"} 10.0
"""


def test_an_exposition_is_read_for_one_model_version() -> None:
    counters = read_exposition(EXPOSITION, "churn", "4")
    assert counters.requests == 100  # every endpoint and status, 4xx included
    assert counters.errors == 3  # 5xx only: a client's bad request is not the canary's fault
    assert (counters.correct, counters.wrong) == (40, 10)
    assert counters.buckets == {0.01: 65, 0.1: 100, math.inf: 100}  # endpoints summed
    assert read_exposition(EXPOSITION, "churn", "3").requests == 70
    assert read_exposition(EXPOSITION, "churn", "9") == Counters()


@pytest.mark.parametrize("page", ["<html>hello</html>", "not metrics at all"])
def test_a_page_that_is_no_exposition_is_refused(page: str) -> None:
    with pytest.raises(DeployError, match="cannot read a Prometheus exposition"):
        read_exposition(page, "churn", "4")


def test_restarted_and_new_pods_count_from_zero() -> None:
    start = {
        "a": Counters(requests=100, errors=1, buckets={0.1: 100}),
        "b": Counters(requests=500, errors=5, buckets={0.1: 500}),
        "gone": Counters(requests=7),
    }
    end = {
        "a": Counters(requests=160, errors=1, buckets={0.1: 160}),  # +60
        "b": Counters(requests=20, errors=2, buckets={0.1: 20}),  # restarted: 20 since
        "new": Counters(requests=30, correct=3, buckets={0.1: 30}),  # started in the window
    }
    total = window_counters(start, end)
    assert (total.requests, total.errors, total.correct) == (110, 2, 3)
    assert total.buckets == {0.1: 110}


def test_p99_is_read_from_the_buckets_as_prometheus_reads_it() -> None:
    assert quantile(0.99, {}) is None
    assert quantile(0.99, {0.1: 0.0, math.inf: 0.0}) is None
    assert quantile(0.5, {0.01: 0.0, 0.02: 100.0, math.inf: 100.0}) == pytest.approx(0.015)
    # beyond the last finite bucket, its edge is all that is known
    assert quantile(0.99, {0.01: 50.0, math.inf: 100.0}) == 0.01


def test_figures_and_their_ratios() -> None:
    figures = Figures.of("4", read_exposition(EXPOSITION, "churn", "4"), pods=2, seconds=60)
    assert figures.error_ratio == pytest.approx(0.03)
    assert figures.accuracy == pytest.approx(0.8)
    assert figures.labelled == 50
    # rank 99 of 100 falls in the (10 ms, 100 ms] bucket, 34 of its 35 requests in
    assert figures.p99_ms == pytest.approx(10 + 90 * 34 / 35)
    assert figures.as_dict()["p99_ms"] == pytest.approx(10 + 90 * 34 / 35, abs=0.001)
    empty = Figures.of("4", Counters(), pods=0, seconds=60)
    assert (empty.error_ratio, empty.accuracy, empty.p99_ms) == (0.0, None, None)
    # a track with no pods at all has no traffic: never promoted
    assert judge(figures, empty).decision == "not-enough-traffic"
