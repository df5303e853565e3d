"""Rendered manifests: valid for Kubernetes 1.25-1.37 (strict), hardened, GPU and KServe."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from modelfleet.deploy import render, write
from modelfleet.deploy.spec import parse_autoscale
from modelfleet.errors import DeployError
from tests.deploy.specs import make_spec, rendered

VERSIONS = [f"1.{minor}" for minor in range(25, 38)]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_core_object_is_valid_strict(version: str) -> None:
    spec = make_spec(autoscale=(2, 8), queue_target=20, gpu=1)
    checked = 0
    for data in rendered(spec).values():
        if data["apiVersion"].startswith(("monitoring.coreos.com", "serving.kserve.io")):
            continue  # custom resources: typed models, no schema ships offline
        kubernetes_validate.validate(data, version, strict=True)
        checked += 1
    assert checked == 7


def test_deployment_is_hardened_probed_and_drained() -> None:
    objects = rendered(make_spec())
    deployment = objects["Deployment"]
    assert deployment["metadata"]["name"] == "churn-model-431ffbc9"
    assert deployment["metadata"]["namespace"] == "modelfleet-prod"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert pod["terminationGracePeriodSeconds"] > 30
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "512Mi"}
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    assert deployment["spec"]["replicas"] == 2
    assert "HorizontalPodAutoscaler" not in objects
    config = yaml.safe_load(objects["ConfigMap"]["data"]["serve.yaml"])
    assert config["models"][0]["sha256"] == "ab" * 32
    assert objects["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    assert objects["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


def test_gpu_variant_requests_gpus_and_tolerates_gpu_nodes() -> None:
    pod = rendered(make_spec(gpu=2))["Deployment"]["spec"]["template"]["spec"]
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "2"
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}


def test_autoscaler_uses_cpu_and_queue_depth() -> None:
    objects = rendered(make_spec(autoscale=(2, 10), target_cpu=60, queue_target=25))
    hpa = objects["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    cpu, queue = hpa["spec"]["metrics"]
    assert cpu["resource"]["target"]["averageUtilization"] == 60
    assert queue["pods"]["metric"]["name"] == "modelfleet_queue_depth"
    assert "replicas" not in objects["Deployment"]["spec"]  # the HPA owns the count


def test_monitoring_objects_and_kserve_variant() -> None:
    objects = rendered(make_spec())
    monitor = objects["ServiceMonitor"]
    assert monitor["spec"]["endpoints"][0] == {
        "port": "http",
        "path": "/metrics",
        "interval": "15s",
        "scrapeTimeout": "10s",
    }
    alerts = {r["alert"] for r in objects["PrometheusRule"]["spec"]["groups"][0]["rules"]}
    assert {"ModelfleetHighLatency", "ModelfleetErrorRatio", "ModelfleetQueueSaturated"} <= alerts
    kserve = rendered(make_spec(autoscale=(1, 4)), kserve=True)
    assert set(kserve) == {"Namespace", "InferenceService"}
    isvc = kserve["InferenceService"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    predictor = isvc["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 4)
    assert predictor["containers"][0]["image"] == "localhost/modelfleet/churn-model:3-prod"
    assert predictor["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_output_folder_is_kustomize_friendly(tmp_path: Path) -> None:
    files = write(render(make_spec(autoscale=(2, 4))), tmp_path / "out")
    kustomization = yaml.safe_load((tmp_path / "out" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == [f.name for f in files]
    assert "hpa.yaml" in kustomization["resources"]
    parsed = yaml.safe_load((tmp_path / "out" / "deployment.yaml").read_text())
    assert parsed["kind"] == "Deployment"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cpu": "lots"}, "invalid CPU request 'lots'"),
        ({"memory": "12 GB"}, "invalid memory request"),
        ({"memory_limit": "-1Gi"}, "invalid memory limit"),
        ({"replicas": 0}, "replicas must be at least 1"),
        ({"autoscale": (5, 2)}, "invalid autoscale range 5:2"),
        ({"target_cpu": 150}, "1-100 percent"),
        ({"gpu": -1}, "--gpu must be 0 or more"),
        # The API server refuses requests above limits; say so before applying anything.
        ({"cpu": "4", "cpu_limit": "2"}, "CPU request 4 is above its limit 2"),
        ({"memory": "2Gi", "memory_limit": "1Gi"}, "memory request 2Gi is above its limit 1Gi"),
    ],
)
def test_bad_inputs_are_explained(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(DeployError, match=message):
        make_spec(**overrides)


def test_autoscale_parsing_and_unwritable_output(tmp_path: Path) -> None:
    assert parse_autoscale("2:10") == (2, 10)
    with pytest.raises(DeployError, match="write MIN:MAX"):
        parse_autoscale("ten")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DeployError, match="cannot write manifests"):
        write(render(make_spec()), blocker / "out")


def test_cli_deploy_writes_manifests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import modelfleet as mf
    from modelfleet.cli import main
    from modelfleet.config import Settings
    from modelfleet.registry import Registry
    from tests.models import sum_graph

    home = tmp_path / "home"
    with Registry.open(Settings(home=home)) as reg:
        mf.register(sum_graph(), name="adder", registry=reg)
    monkeypatch.setenv("MODELFLEET_HOME", str(home))
    code = main(
        [
            "deploy",
            "adder:1",
            "--env",
            "qa",
            "--autoscale",
            "1:3",
            "--out",
            str(tmp_path / "m"),
            "--json",
        ]
    )
    assert code == 0
    listing = json.loads(capsys.readouterr().out)
    assert "deployment.yaml" in listing["files"]
    assert main(["deploy", "adder:1", "--env", "qa", "--cpu", "fast"]) == 1
    assert "invalid CPU request" in capsys.readouterr().err
    assert main(["deploy", "nope", "--env", "qa"]) == 1


def test_each_serve_config_is_its_own_configmap_so_rollbacks_find_theirs() -> None:
    import yaml

    from modelfleet.serving.settings import ServeConfig

    v3, v4 = rendered(make_spec()), rendered(make_spec(version=4, artifact_sha256="cd" * 32))
    name3 = v3["ConfigMap"]["metadata"]["name"]
    assert (
        name3.startswith("churn-model-431ffbc9-serve-")
        and name3 != v4["ConfigMap"]["metadata"]["name"]
    )
    assert rendered(make_spec())["ConfigMap"]["metadata"]["name"] == name3  # deterministic
    volumes = v3["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "serve-config", "configMap": {"name": name3}} in volumes
    assert (
        v3["ConfigMap"]["metadata"]["labels"]["modelfleet.io/serve-config"]
        == "churn-model-431ffbc9"
    )
    profiled = rendered(make_spec(profile=True))["ConfigMap"]["data"]["serve.yaml"]
    config = ServeConfig.model_validate(yaml.safe_load(profiled))
    assert config.models[0].watch.profile == "/opt/modelfleet/profile.json"
    assert config.monitoring.max_predictions == 100_000  # sized for the pod's 64 MiB /tmp
