"""The model's pod: least privilege, resources and GPUs, drain timing, volumes that exist."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.utils.quantity import parse_quantity

from modelfleet.deploy.pod import container, pod_spec
from tests.deploy.specs import make_spec, pod_of, rendered, validate


def _pod(**overrides: Any) -> dict[str, Any]:
    return pod_of(rendered(make_spec(**overrides)))


def test_the_pod_runs_as_the_images_unprivileged_user_with_nothing_extra() -> None:
    pod = _pod()
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) == (10001,) * 3
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    # No API token and no service env vars: the server never talks to the cluster.
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    (server,) = pod["containers"]
    assert server["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def test_the_restricted_pod_security_standard_is_enforced_on_the_namespace() -> None:
    labels = rendered(make_spec())["Namespace"]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["modelfleet.io/environment"] == "prod"


def test_with_a_read_only_root_only_tmp_is_writable_and_it_is_bounded() -> None:
    pod = _pod()
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == set(volumes)  # every mount has its volume
    assert mounts["tmp"]["mountPath"] == "/tmp"
    assert mounts["tmp"].get("readOnly") is not True
    assert volumes["tmp"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Mi"}
    assert mounts["serve-config"] == {
        "name": "serve-config",
        "mountPath": "/etc/modelfleet",
        "readOnly": True,
    }


def test_requests_and_limits_are_what_was_asked() -> None:
    resources = _pod(cpu="1", memory="2Gi", cpu_limit="4", memory_limit="4Gi")["containers"][0][
        "resources"
    ]
    assert resources == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "4", "memory": "4Gi"},
    }
    for kind in ("cpu", "memory"):
        assert parse_quantity(resources["requests"][kind]) <= parse_quantity(
            resources["limits"][kind]
        )


def test_without_limits_the_field_is_left_out_not_null() -> None:
    objects = rendered(make_spec(cpu_limit=None, memory_limit=None))
    resources = pod_of(objects)["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "500m", "memory": "512Mi"}}
    validate(objects["Deployment"])


def test_only_a_memory_limit_keeps_cpu_unbounded() -> None:
    resources = _pod(cpu_limit=None)["containers"][0]["resources"]
    assert resources["limits"] == {"memory": "1Gi"}


@pytest.mark.parametrize("gpus", [1, 4])
def test_gpus_are_requested_equal_to_their_limit_and_land_on_gpu_nodes(gpus: int) -> None:
    objects = rendered(make_spec(gpu=gpus))
    pod = pod_of(objects)
    resources = pod["containers"][0]["resources"]
    # Extended resources cannot be overcommitted: the API refuses request != limit.
    assert resources["requests"]["nvidia.com/gpu"] == str(gpus)
    assert resources["limits"]["nvidia.com/gpu"] == str(gpus)
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    validate(objects["Deployment"])


def test_a_cpu_pod_neither_asks_for_nor_tolerates_gpu_nodes() -> None:
    pod = _pod()
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["requests"]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"].get("limits", {})
    assert "nodeSelector" not in pod
    assert "tolerations" not in pod


@pytest.mark.parametrize("drain", [0, 30, 120])
def test_kubernetes_waits_for_the_pause_and_the_drain_before_killing(drain: int) -> None:
    pod = _pod(drain_seconds=drain)
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # SIGKILL only after the endpoint is gone (preStop) and the server had its drain time.
    assert pod["terminationGracePeriodSeconds"] > int(pre_stop[1]) + drain


def test_probes_use_the_named_port_and_liveness_is_slower_than_readiness() -> None:
    server = _pod()["containers"][0]
    ports = {p["name"]: p for p in server["ports"]}
    assert ports["http"] == {"name": "http", "containerPort": 8080, "protocol": "TCP"}
    ready, live, startup = (
        server["readinessProbe"],
        server["livenessProbe"],
        server["startupProbe"],
    )
    for probe in (ready, live, startup):
        assert probe["httpGet"]["port"] in ports
        assert probe["timeoutSeconds"] <= probe["periodSeconds"]  # never two checks at once
    # A slow pod leaves the Service long before it is restarted.
    assert (
        ready["periodSeconds"] * ready["failureThreshold"]
        < live["periodSeconds"] * live["failureThreshold"]
    )
    # Loading a large graph may take minutes: the startup probe allows for it.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60


def test_a_custom_port_moves_the_container_port_and_the_scrape_annotation() -> None:
    deployment = rendered(make_spec(port=9000))["Deployment"]
    template = deployment["spec"]["template"]
    assert template["spec"]["containers"][0]["ports"][0]["containerPort"] == 9000
    assert template["metadata"]["annotations"]["prometheus.io/port"] == "9000"


def test_pods_are_spread_over_nodes_without_blocking_scheduling() -> None:
    (spread,) = _pod()["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"  # a one-node cluster still works
    assert spread["labelSelector"]["matchLabels"] == make_spec().labels


def test_the_container_knows_its_environment_and_image() -> None:
    spec = make_spec(image="registry.example/churn:3-prod")
    server = container(spec)
    assert server["image"] == "registry.example/churn:3-prod"
    assert server["imagePullPolicy"] == "IfNotPresent"
    assert {"name": "MODELFLEET_ENVIRONMENT", "value": "prod"} in server["env"]


def test_builders_return_fresh_objects_each_call() -> None:
    spec = make_spec()
    first = pod_spec(spec, config_map="a")
    first["containers"][0]["env"].clear()
    assert pod_spec(spec, config_map="a")["containers"][0]["env"]  # nothing shared
