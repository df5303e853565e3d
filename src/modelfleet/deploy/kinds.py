"""Typed shapes of the core Kubernetes kinds modelfleet renders, keyed exactly as the API.

Each ``TypedDict`` names the fields of the Kubernetes object it stands for, spelled as the
API spells them (camelCase), so a builder reads like the manifest it produces and mypy
checks it against that shape. Only the fields modelfleet sets are declared; optional ones
are ``NotRequired`` and left out rather than set to null, as ``kubectl`` would.
"""

from __future__ import annotations

from typing import Literal, NotRequired

# pydantic (the KServe model in crds.py embeds a Container) needs typing_extensions'
# TypedDict on Python < 3.12.
from typing_extensions import TypedDict


class ObjectMeta(TypedDict, total=False):
    """metadata: who the object is and how it is selected."""

    name: str
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str]


class LabelSelector(TypedDict, total=False):
    """A selector; empty selects everything (used for 'any namespace')."""

    matchLabels: dict[str, str]


class Namespace(TypedDict):
    """v1 Namespace."""

    apiVersion: Literal["v1"]
    kind: Literal["Namespace"]
    metadata: ObjectMeta


class ConfigMap(TypedDict):
    """v1 ConfigMap."""

    apiVersion: Literal["v1"]
    kind: Literal["ConfigMap"]
    metadata: ObjectMeta
    data: dict[str, str]


class ContainerPort(TypedDict):
    """A named port the container listens on."""

    name: str
    containerPort: int
    protocol: Literal["TCP", "UDP", "SCTP"]


class SecretKeySelector(TypedDict):
    """One key of a Secret in the pod's namespace."""

    name: str
    key: str


class EnvVarSource(TypedDict):
    """Where an environment variable's value comes from."""

    secretKeyRef: SecretKeySelector


class EnvVar(TypedDict):
    """An environment variable: a literal ``value`` or ``valueFrom`` a Secret."""

    name: str
    value: NotRequired[str]
    valueFrom: NotRequired[EnvVarSource]


class Secret(TypedDict):
    """v1 Secret (``stringData``: the API server encodes it)."""

    apiVersion: Literal["v1"]
    kind: Literal["Secret"]
    metadata: ObjectMeta
    type: Literal["Opaque"]
    stringData: dict[str, str]


class ResourceRequirements(TypedDict):
    """Requests the scheduler reserves and limits the kubelet enforces."""

    requests: dict[str, str]
    limits: NotRequired[dict[str, str]]


class HTTPGetAction(TypedDict):
    """An HTTP GET against the container (port by name or number)."""

    path: str
    port: int | str


class Probe(TypedDict):
    """A readiness, liveness or startup check."""

    httpGet: HTTPGetAction
    periodSeconds: int
    timeoutSeconds: int
    failureThreshold: int


class ExecAction(TypedDict):
    """A command run inside the container."""

    command: list[str]


class LifecycleHandler(TypedDict):
    """What runs at a lifecycle hook."""

    exec: ExecAction


class Lifecycle(TypedDict):
    """Container lifecycle hooks."""

    preStop: LifecycleHandler


class Capabilities(TypedDict):
    """Linux capabilities added to or dropped from the container."""

    drop: list[str]


class SecurityContext(TypedDict):
    """Per-container hardening."""

    allowPrivilegeEscalation: bool
    readOnlyRootFilesystem: bool
    runAsNonRoot: bool
    capabilities: Capabilities


class VolumeMount(TypedDict):
    """Where a pod volume appears in the container."""

    name: str
    mountPath: str
    readOnly: NotRequired[bool]


class Container(TypedDict):
    """v1 Container."""

    name: str
    image: str
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"]
    ports: list[ContainerPort]
    env: list[EnvVar]
    resources: ResourceRequirements
    readinessProbe: Probe
    livenessProbe: Probe
    startupProbe: Probe
    lifecycle: Lifecycle
    securityContext: SecurityContext
    volumeMounts: list[VolumeMount]


class SeccompProfile(TypedDict):
    """The seccomp filter applied to the pod."""

    type: Literal["RuntimeDefault", "Localhost", "Unconfined"]


class PodSecurityContext(TypedDict):
    """Pod-wide identity and hardening."""

    runAsNonRoot: bool
    runAsUser: int
    runAsGroup: int
    fsGroup: int
    seccompProfile: SeccompProfile


class EmptyDirVolumeSource(TypedDict):
    """A scratch volume that lives as long as the pod."""

    medium: Literal["", "Memory"]
    sizeLimit: str


class ConfigMapVolumeSource(TypedDict):
    """A ConfigMap's keys as files."""

    name: str


class Volume(TypedDict):
    """A pod volume (exactly one source is set)."""

    name: str
    emptyDir: NotRequired[EmptyDirVolumeSource]
    configMap: NotRequired[ConfigMapVolumeSource]


class TopologySpreadConstraint(TypedDict):
    """How replicas spread across a topology domain."""

    maxSkew: int
    topologyKey: str
    whenUnsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"]
    labelSelector: LabelSelector


class Toleration(TypedDict):
    """A taint the pod accepts."""

    key: str
    operator: Literal["Exists", "Equal"]
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class PodSpec(TypedDict):
    """v1 PodSpec."""

    automountServiceAccountToken: bool
    enableServiceLinks: bool
    terminationGracePeriodSeconds: int
    securityContext: PodSecurityContext
    containers: list[Container]
    volumes: list[Volume]
    topologySpreadConstraints: list[TopologySpreadConstraint]
    nodeSelector: NotRequired[dict[str, str]]
    tolerations: NotRequired[list[Toleration]]


class PodTemplateSpec(TypedDict):
    """The pods a controller creates."""

    metadata: ObjectMeta
    spec: PodSpec


class RollingUpdateDeployment(TypedDict):
    """How many pods a rolling update may add or take away at once."""

    maxSurge: int | str
    maxUnavailable: int | str


class DeploymentStrategy(TypedDict):
    """How old pods are replaced by new ones."""

    type: Literal["RollingUpdate", "Recreate"]
    rollingUpdate: RollingUpdateDeployment


class DeploymentSpec(TypedDict):
    """apps/v1 DeploymentSpec; no replicas when an autoscaler owns the count."""

    replicas: NotRequired[int]
    revisionHistoryLimit: int
    selector: LabelSelector
    strategy: DeploymentStrategy
    template: PodTemplateSpec


class Deployment(TypedDict):
    """apps/v1 Deployment."""

    apiVersion: Literal["apps/v1"]
    kind: Literal["Deployment"]
    metadata: ObjectMeta
    spec: DeploymentSpec


class ServicePort(TypedDict):
    """A port the Service exposes and the pod port it forwards to."""

    name: str
    port: int
    targetPort: int | str
    protocol: Literal["TCP", "UDP", "SCTP"]


class ServiceSpec(TypedDict):
    """v1 ServiceSpec."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"]
    selector: dict[str, str]
    ports: list[ServicePort]


class Service(TypedDict):
    """v1 Service."""

    apiVersion: Literal["v1"]
    kind: Literal["Service"]
    metadata: ObjectMeta
    spec: ServiceSpec


class CrossVersionObjectReference(TypedDict):
    """The object an autoscaler scales."""

    apiVersion: str
    kind: str
    name: str


class MetricTarget(TypedDict):
    """The value an autoscaler steers a metric towards."""

    type: Literal["Utilization", "Value", "AverageValue"]
    averageUtilization: NotRequired[int]
    averageValue: NotRequired[str]


class ResourceMetricSource(TypedDict):
    """A container resource (CPU, memory) averaged over the pods."""

    name: str
    target: MetricTarget


class MetricIdentifier(TypedDict):
    """A custom metric's name."""

    name: str


class PodsMetricSource(TypedDict):
    """A per-pod custom metric averaged over the pods."""

    metric: MetricIdentifier
    target: MetricTarget


class MetricSpec(TypedDict):
    """One signal the autoscaler scales on (exactly one source is set)."""

    type: Literal["Resource", "Pods"]
    resource: NotRequired[ResourceMetricSource]
    pods: NotRequired[PodsMetricSource]


class HorizontalPodAutoscalerSpec(TypedDict):
    """autoscaling/v2 HorizontalPodAutoscalerSpec."""

    scaleTargetRef: CrossVersionObjectReference
    minReplicas: int
    maxReplicas: int
    metrics: list[MetricSpec]


class HorizontalPodAutoscaler(TypedDict):
    """autoscaling/v2 HorizontalPodAutoscaler."""

    apiVersion: Literal["autoscaling/v2"]
    kind: Literal["HorizontalPodAutoscaler"]
    metadata: ObjectMeta
    spec: HorizontalPodAutoscalerSpec


class PodDisruptionBudgetSpec(TypedDict):
    """policy/v1 PodDisruptionBudgetSpec."""

    maxUnavailable: int | str
    selector: LabelSelector


class PodDisruptionBudget(TypedDict):
    """policy/v1 PodDisruptionBudget."""

    apiVersion: Literal["policy/v1"]
    kind: Literal["PodDisruptionBudget"]
    metadata: ObjectMeta
    spec: PodDisruptionBudgetSpec


class NetworkPolicyPeer(TypedDict):
    """Who may connect: pods in namespaces matching the selector."""

    namespaceSelector: LabelSelector


class NetworkPolicyPort(TypedDict):
    """A port (by name or number) a rule opens."""

    port: int | str
    protocol: Literal["TCP", "UDP", "SCTP"]


# 'from' is a Python keyword, so this one kind is spelled in the functional form.
NetworkPolicyIngressRule = TypedDict(
    "NetworkPolicyIngressRule",
    {"from": list[NetworkPolicyPeer], "ports": list[NetworkPolicyPort]},
)


class NetworkPolicySpec(TypedDict):
    """networking.k8s.io/v1 NetworkPolicySpec."""

    podSelector: LabelSelector
    policyTypes: list[Literal["Ingress", "Egress"]]
    ingress: list[NetworkPolicyIngressRule]


class NetworkPolicy(TypedDict):
    """networking.k8s.io/v1 NetworkPolicy."""

    apiVersion: Literal["networking.k8s.io/v1"]
    kind: Literal["NetworkPolicy"]
    metadata: ObjectMeta
    spec: NetworkPolicySpec
