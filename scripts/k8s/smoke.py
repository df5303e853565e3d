"""End-to-end smoke test of the local cluster from scripts/k8s/up.sh.

Talks to the API server only through the official ``kubernetes`` client and the kubeconfig
that up.sh wrote. It creates a namespace with a hardened Deployment (non-root, read-only root
filesystem, no capabilities, RuntimeDefault seccomp) serving HTTP from
``localhost/modelfleet-base:bookworm``, exposes it with a ClusterIP Service, waits for the pod,
fetches a page through the Service from this host, prints the server version and the served
versions of the autoscaling and policy API groups, and deletes the namespace again.

    /work/main/.venv/bin/python scripts/k8s/smoke.py [--kubeconfig PATH] [--image IMAGE]

Exit status 0 means every step worked.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

from kubernetes import client, config
from kubernetes.client.rest import ApiException

# up.sh's run directory (K8S_RUN) holds the kubeconfig it writes.
RUN_DIR = os.environ.get("K8S_RUN", "/tmp/modelfleet-k8s")  # noqa: S108 - fixed, root-owned
DEFAULT_KUBECONFIG = os.path.join(RUN_DIR, "kubeconfig")
PORT = 8080
APP = "smoke-http"
# Served versions this check insists on: the cluster is Kubernetes 1.20.
EXPECTED = {"autoscaling": "v2beta2", "policy": "v1beta1"}


def say(msg: str) -> None:
    print(f"[smoke {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def deployment(namespace: str, image: str) -> client.V1Deployment:
    labels = {"app": APP}
    container = client.V1Container(
        name="http",
        image=image,
        image_pull_policy="IfNotPresent",
        command=["python3", "-m", "http.server", str(PORT)],
        working_dir="/",
        ports=[client.V1ContainerPort(container_port=PORT, name="http")],
        security_context=client.V1SecurityContext(
            run_as_user=10001,
            run_as_group=10001,
            run_as_non_root=True,
            read_only_root_filesystem=True,
            allow_privilege_escalation=False,
            capabilities=client.V1Capabilities(drop=["ALL"]),
            seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
        ),
        readiness_probe=client.V1Probe(
            http_get=client.V1HTTPGetAction(path="/", port=PORT),
            period_seconds=1,
            failure_threshold=3,
        ),
        resources=client.V1ResourceRequirements(
            requests={"cpu": "10m", "memory": "32Mi"}, limits={"memory": "128Mi"}
        ),
    )
    pod_spec = client.V1PodSpec(
        containers=[container],
        automount_service_account_token=False,
        enable_service_links=False,
        termination_grace_period_seconds=2,
        security_context=client.V1PodSecurityContext(
            run_as_non_root=True,
            seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
        ),
    )
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=APP, namespace=namespace, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels), spec=pod_spec
            ),
        ),
    )


def service(namespace: str, name: str, kind: str) -> client.V1Service:
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=name, namespace=namespace),
        spec=client.V1ServiceSpec(
            type=kind,
            selector={"app": APP},
            ports=[client.V1ServicePort(name="http", port=PORT, target_port=PORT, protocol="TCP")],
        ),
    )


def wait_pod_ready(core: client.CoreV1Api, namespace: str, timeout: float) -> client.V1Pod:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod(namespace, label_selector=f"app={APP}").items
        for pod in pods:
            conds = {c.type: c.status for c in (pod.status.conditions or [])}
            if conds.get("Ready") == "True":
                return pod
            waiting = [
                f"{cs.name}: {cs.state.waiting.reason}"
                for cs in (pod.status.container_statuses or [])
                if cs.state and cs.state.waiting
            ]
            last = f"{pod.metadata.name} phase={pod.status.phase} {waiting or ''}"
        time.sleep(0.5)
    events = core.list_namespaced_event(namespace).items
    for ev in events[-15:]:
        obj = f"{ev.involved_object.kind}/{ev.involved_object.name}"
        print(f"  event: {obj}: {ev.reason}: {ev.message}")
    raise RuntimeError(f"pod not Ready after {timeout:.0f}s ({last})")


def http_get(url: str, timeout: float) -> str:
    """GETs url, retrying until timeout (kube-proxy programs its rules asynchronously)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    deadline = time.monotonic() + timeout
    err: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with opener.open(url, timeout=3) as resp:
                return f"HTTP {resp.status}, {len(resp.read())} bytes"
        except (urllib.error.URLError, OSError) as exc:
            err = exc
            time.sleep(0.5)
    raise RuntimeError(f"{url} not reachable after {timeout:.0f}s: {err}")


def print_versions(api_client: client.ApiClient) -> None:
    version = client.VersionApi(api_client).get_code()
    say(f"API server version: {version.git_version} (platform {version.platform})")
    groups = {g.name: g for g in client.ApisApi(api_client).get_api_versions().groups}
    for name, wanted in EXPECTED.items():
        group = groups.get(name)
        if group is None:
            raise RuntimeError(f"API group {name} is not served")
        served = [v.version for v in group.versions]
        preferred = group.preferred_version.version
        say(f"served {name} versions: {', '.join(served)} (preferred {preferred})")
        if wanted not in served:
            raise RuntimeError(f"expected {name}/{wanted} to be served, got {served}")


def delete_namespace(
    core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str, timeout: float
) -> None:
    # Remove the workload first and wait for its pods: the namespace controller retries with
    # exponential backoff while pods remain, which would make the deletion take ~30 s.
    deadline = time.monotonic() + timeout
    try:
        apps.delete_namespaced_deployment(APP, namespace, propagation_policy="Foreground")
    except ApiException as exc:
        if exc.status != 404:
            raise
    while time.monotonic() < deadline:
        if not core.list_namespaced_pod(namespace).items:
            break
        time.sleep(0.5)
    say("deployment and its pods deleted")
    try:
        core.delete_namespace(namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
    while time.monotonic() < deadline:
        try:
            core.read_namespace(namespace)
        except ApiException as exc:
            if exc.status == 404:
                say(f"namespace {namespace} deleted")
                return
            raise
        time.sleep(0.5)
    say(f"WARNING: namespace {namespace} still terminating after {timeout:.0f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG", DEFAULT_KUBECONFIG))
    parser.add_argument("--image", default="localhost/modelfleet-base:bookworm")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the pod")
    args = parser.parse_args()

    t0 = time.monotonic()
    config.load_kube_config(config_file=args.kubeconfig)
    api_client = client.ApiClient()
    core = client.CoreV1Api(api_client)
    apps = client.AppsV1Api(api_client)

    print_versions(api_client)

    namespace = f"modelfleet-smoke-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    say(f"created namespace {namespace}")
    try:
        apps.create_namespaced_deployment(namespace, deployment(namespace, args.image))
        svc = core.create_namespaced_service(namespace, service(namespace, APP, "ClusterIP"))
        say(
            f"created deployment {APP} ({args.image}) "
            f"and ClusterIP service {svc.spec.cluster_ip}:{PORT}"
        )

        pod = wait_pod_ready(core, namespace, args.timeout)
        sc = pod.spec.containers[0].security_context
        say(
            f"pod {pod.metadata.name} Ready on {pod.spec.node_name}, pod IP {pod.status.pod_ip} "
            f"(runAsUser={sc.run_as_user}, readOnlyRootFilesystem={sc.read_only_root_filesystem}, "
            f"drop={sc.capabilities.drop}, seccomp={sc.seccomp_profile.type})"
        )

        url = f"http://{svc.spec.cluster_ip}:{PORT}/"
        try:
            result = http_get(url, 30)
            say(f"ClusterIP reachable from the host: GET {url} -> {result}")
        except RuntimeError as exc:
            say(f"ClusterIP NOT reachable from the host ({exc}); trying a NodePort service")
            np_svc = service(namespace, f"{APP}-np", "NodePort")
            np = core.create_namespaced_service(namespace, np_svc)
            node = core.read_node(pod.spec.node_name)
            node_ip = next(a.address for a in node.status.addresses if a.type == "InternalIP")
            url = f"http://{node_ip}:{np.spec.ports[0].node_port}/"
            result = http_get(url, 30)
            say(f"NodePort reachable from the host: GET {url} -> {result}")
    finally:
        delete_namespace(core, apps, namespace, 90)
    say(f"smoke test passed in {time.monotonic() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
