"""Names and quantities come out the way the API server will accept them."""

from __future__ import annotations

import re
import sys

import pytest

from modelfleet.errors import DeployError
from modelfleet.kube import check_quantity, k8s_name

# The API server's own rule for a DNS-1123 label (apimachinery IsDNS1123Label).
DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("churn", "churn"),
        ("Churn_Model.v2", "churn-model-v2-f7dbe5ed"),
        ("--fraud--", "fraud-af1059af"),
        ("credit score (EU)", "credit-score-eu-e9556f55"),
        ("modèle", "mod-le-bf5d8ba8"),
        ("a__b..c", "a-b-c-273fe225"),
        ("7", "7"),
    ],
)
def test_names_become_dns_1123_labels(given: str, expected: str) -> None:
    assert k8s_name(given) == expected
    assert DNS_1123_LABEL.fullmatch(k8s_name(given))


def test_long_names_are_cut_to_53_and_never_end_in_a_dash() -> None:
    assert k8s_name("x" * 80) == "x" * 44 + "-d929cdee"
    # A changed name is cut to leave room for its suffix, and the result stays within 53.
    cut = k8s_name("a" * 52 + "_tail")
    assert cut.startswith("a" * 44 + "-")
    assert len(cut) <= 53
    assert DNS_1123_LABEL.fullmatch(cut)
    assert k8s_name("a" * 43 + "_" + "b" * 10).startswith("a" * 43 + "-")  # no double dash


@pytest.mark.parametrize("given", ["", "___", "…", "--"])
def test_a_name_with_nothing_usable_is_refused(given: str) -> None:
    with pytest.raises(DeployError, match="cannot derive a Kubernetes name from"):
        k8s_name(given)


@pytest.mark.parametrize("value", ["500m", "2", "0.5", "512Mi", "2Gi", "1.5G", "100k"])
def test_quantities_kubernetes_accepts_pass(value: str) -> None:
    assert check_quantity(value, "CPU request") == value


@pytest.mark.parametrize("value", ["lots", "2 Gi", "-1", "512mb", "1e3x", "", "0", "0m"])
def test_bad_or_empty_quantities_say_what_and_how(value: str) -> None:
    with pytest.raises(DeployError, match=r"invalid memory request .*use a Kubernetes quantity"):
        check_quantity(value, "memory request")


def test_quantities_keep_their_pattern_without_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendering manifests works without the k8s extra: only the amount check is skipped."""
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    assert check_quantity("512Mi", "memory request") == "512Mi"
    with pytest.raises(DeployError, match="invalid memory request 'lots'"):
        check_quantity("lots", "memory request")
