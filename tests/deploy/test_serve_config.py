"""The ConfigMap's serve config: a real ServeConfig, the image's own shape, and a server that
starts from it and answers every probe and scrape the manifests point at."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelfleet.build.context import IMAGE_MONITORING, MODEL_PATH, PROFILE_PATH, serve_yaml
from modelfleet.config import Settings
from modelfleet.deploy.manifests import config_map_name, serve_config
from modelfleet.errors import ConfigError, DeployError
from modelfleet.registry import Registry
from modelfleet.serving import ServeConfig, load_serve_config
from tests.deploy.specs import make_spec, pod_of, rendered
from tests.models import sum_graph
from tests.serving.conftest import run_server


def _mounted(objects: dict[str, dict[str, Any]], folder: Path) -> ServeConfig:
    """Load the ConfigMap's serve.yaml the way the server in the pod does."""
    path = folder / "serve.yaml"
    path.write_text(objects["ConfigMap"]["data"]["serve.yaml"])
    return load_serve_config(path)


def test_the_configmap_loads_into_the_serve_config_deploy_built(tmp_path: Path) -> None:
    spec = make_spec(metrics={"accuracy": 0.93, "f1": 0.9})
    loaded = _mounted(rendered(spec), tmp_path)
    assert loaded == serve_config(spec)
    (model,) = loaded.models
    assert (model.ref, model.name, model.version, model.variant) == (
        MODEL_PATH,
        "Churn_Model",
        "3",
        "int8",
    )
    assert model.sha256 == spec.artifact_sha256  # the server checks the graph against it
    assert model.metrics == {"accuracy": 0.93, "f1": 0.9}  # they gate the output cache
    assert model.follow is False  # an image serves one pinned graph, never a moving stage
    assert model.watch.profile is None


def test_the_server_section_fits_the_pod() -> None:
    server = serve_config(make_spec(port=9000, drain_seconds=45)).server
    assert server.host == "0.0.0.0"  # reachable through the pod IP
    assert server.port == 9000
    assert server.drain_timeout_s == 45
    assert server.lame_duck_s > 0  # kept-alive clients are told to reconnect elsewhere


def test_monitoring_is_sized_for_the_pods_in_memory_tmp() -> None:
    monitoring = serve_config(make_spec()).monitoring
    assert monitoring == IMAGE_MONITORING
    assert monitoring.max_predictions == 100_000
    assert monitoring.log_max_bytes * (monitoring.log_backups + 1) < 64 << 20


def test_a_profiled_image_scores_drift_against_its_baked_profile(tmp_path: Path) -> None:
    loaded = _mounted(rendered(make_spec(profile=True)), tmp_path)
    assert loaded.models[0].watch.profile == PROFILE_PATH
    assert loaded.models[0].watch.enabled is True


def test_only_settings_deploy_decides_are_written() -> None:
    # Every other setting keeps the default of the modelfleet inside the image, and an
    # older server never meets a field it does not know.
    data = yaml.safe_load(serve_yaml(serve_config(make_spec())))
    assert set(data) == {"server", "models", "monitoring"}
    assert set(data["server"]) == {"host", "port", "drain_timeout_s", "lame_duck_s"}
    assert set(data["models"][0]) == {
        "ref",
        "name",
        "sha256",
        "version",
        "variant",
        "metrics",
        "follow",
    }
    assert "batching" not in data["models"][0]


def test_the_configmap_text_is_what_the_image_would_carry() -> None:
    spec = make_spec()
    config_map = rendered(spec)["ConfigMap"]
    assert config_map["data"] == {"serve.yaml": serve_yaml(serve_config(spec))}


def test_the_configmap_name_follows_its_content_only() -> None:
    base = make_spec()
    same = make_spec(replicas=5, cpu="1", image="elsewhere/churn:3")  # pod changes only
    assert config_map_name(base) == config_map_name(same)
    changed = [
        make_spec(version=4),
        make_spec(artifact_sha256="cd" * 32),
        make_spec(metrics={"accuracy": 0.94}),
        make_spec(profile=True),
        make_spec(drain_seconds=60),
    ]
    names = {config_map_name(s) for s in changed}
    assert len(names) == len(changed)
    assert config_map_name(base) not in names
    text = rendered(base)["ConfigMap"]["data"]["serve.yaml"]
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    assert config_map_name(base) == f"churn-model-431ffbc9-serve-{digest}"


def test_the_configmap_is_labelled_so_old_ones_can_be_pruned() -> None:
    objects = rendered(make_spec())
    config_map = objects["ConfigMap"]
    assert config_map["metadata"]["labels"]["modelfleet.io/serve-config"] == "churn-model-431ffbc9"
    assert config_map["metadata"]["namespace"] == objects["Deployment"]["metadata"]["namespace"]
    volumes = {v["name"]: v for v in pod_of(objects)["volumes"]}
    assert volumes["serve-config"]["configMap"]["name"] == config_map["metadata"]["name"]


def test_a_tampered_configmap_is_refused_naming_the_field(tmp_path: Path) -> None:
    text = rendered(make_spec())["ConfigMap"]["data"]["serve.yaml"]
    data = yaml.safe_load(text)
    data["models"][0]["threads"] = 0
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"models\.0\.threads"):
        load_serve_config(path)


def test_a_server_started_from_the_configmap_answers_every_probe_and_scrape(
    tmp_path: Path, settings: Settings
) -> None:
    graph = tmp_path / "model.onnx"
    graph.write_bytes(sum_graph().SerializeToString())
    sha = hashlib.sha256(graph.read_bytes()).hexdigest()
    objects = rendered(
        make_spec(artifact_sha256=sha, drain_seconds=0, autoscale=(1, 3), queue_target=10)
    )
    config = _mounted(objects, tmp_path)
    # The graph sits at MODEL_PATH in the image; here it sits in the test's folder.
    model = config.models[0].model_copy(update={"ref": str(graph)})
    local = config.model_copy(
        update={
            "models": (model,),
            "server": config.server.model_copy(update={"lame_duck_s": 0.0}),
        }
    )
    server = pod_of(objects)["containers"][0]
    template = objects["Deployment"]["spec"]["template"]["metadata"]
    monitor = objects["ServiceMonitor"]["spec"]["endpoints"][0]
    scaled_on = objects["HorizontalPodAutoscaler"]["spec"]["metrics"][1]["pods"]["metric"]["name"]
    with run_server(local, settings) as running:
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            path = server[probe]["httpGet"]["path"]
            assert running.http.get(path).status_code == 200, path
        for path in (template["annotations"]["prometheus.io/path"], monitor["path"]):
            scraped = running.http.get(path)
            assert scraped.status_code == 200
            assert f"\n{scaled_on}{{" in scraped.text  # the series the autoscaler reads
        served = running.http.get("/v2/models/Churn_Model").json()
        assert served["name"] == "Churn_Model"
        assert "3" in served["versions"]
        answer = running.http.post(
            "/v2/models/Churn_Model/infer",
            json={
                "inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]
            },
        )
        assert answer.status_code == 200
        assert answer.json()["outputs"][0]["data"] == [6.0]


def test_the_configmap_name_of_a_known_spec_is_pinned() -> None:
    # The name is a digest of the YAML text: any change to how the config is written gives
    # every deployed model a new ConfigMap and a rollout on its next deploy. Change this
    # value only on purpose, and say so in the release notes.
    assert config_map_name(make_spec()) == "churn-model-431ffbc9-serve-891e03642e"


def test_a_metric_the_server_cannot_read_is_refused_before_anything_is_written() -> None:
    spec = make_spec(metrics={"accuracy": "high"})
    with pytest.raises(DeployError, match=r"serve config for Churn_Model:3 is invalid: .*accuracy"):
        rendered(spec)


def test_the_mounted_config_serves_the_same_model_the_image_bakes_in(registry: Registry) -> None:
    import modelfleet as mf
    from modelfleet.build.context import serve_config as baked_config

    version = mf.register(sum_graph(), name="adder", metrics={"accuracy": 0.99}, registry=registry)
    onnx = version.artifact("onnx")
    assert onnx is not None
    spec = make_spec(
        model=version.name,
        version=version.version,
        variant=version.variant.value,
        artifact_sha256=onnx.sha256,
        metrics=dict(version.metrics),
    )
    # Mounting the ConfigMap over the image's file may change how the model is served,
    # never which graph, name or version.
    assert serve_config(spec).models == baked_config(version).models
    assert serve_config(spec).monitoring == baked_config(version).monitoring
