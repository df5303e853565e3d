"""A release: the candidate runs as a canary beside the stable, is judged, then promoted.

1. :func:`find_stable` reads the model's Deployment in the environment's namespace (the
   one ``deploy`` renders); without one, :func:`run_release` deploys the candidate as
   ``deploy --apply`` would: a first release has nothing to be judged against.
2. The canary (:mod:`modelfleet.deploy.canary`) is applied and rolled out.
3. :func:`~modelfleet.deploy.judge.watch` reads both tracks' pods before and after the
   window (longer, up to ``max_window_s``, while traffic is short) and judges.
4. Promote: the stable Deployment gets the candidate's rendering (image, version, serve
   config), rolls out, and the canary is deleted. Anything else, including a canary that
   does not start or cannot be read: the canary is deleted and the stable left untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from modelfleet.deploy.apply import Rollout, prune_serve_configs, wait_rollout
from modelfleet.deploy.canary import canary_name, render_canary, track_selectors
from modelfleet.deploy.figures import exposition_parser
from modelfleet.deploy.judge import CANARY, STABLE, Thresholds, Verdict, watch
from modelfleet.deploy.manifests import Manifest, render, to_dict
from modelfleet.deploy.scrape import MetricsSource, PodProxyScraper
from modelfleet.deploy.spec import DeploySpec
from modelfleet.errors import DeployError
from modelfleet.kube import Cluster, api_error_message, apply_objects, require_kubernetes

Action = Literal["first-release", "promoted", "rolled-back", "unchanged"]
_VERSION_LABEL = "app.kubernetes.io/version"
_STATE_ENV = "MODELFLEET_STATE_URL"


@dataclass(frozen=True)
class Stable:
    """The Deployment serving the environment now."""

    name: str
    version: str
    image: str
    replicas: int
    state_secret: str | None = None  # the Secret its pods read the shared state URL from


def _state_secret(container: Any) -> str | None:
    for env in container.env or []:
        ref = env.value_from.secret_key_ref if env.value_from else None
        if env.name == _STATE_ENV and ref is not None:
            return str(ref.name)
    return None


def find_stable(cluster: Cluster, name: str, namespace: str) -> Stable | None:
    """The model Deployment ``name`` in ``namespace``, or None when there is none."""
    k8s = require_kubernetes()
    apps = k8s.client.AppsV1Api(cluster.api)
    try:
        found = apps.read_namespaced_deployment(name, namespace)
    except k8s.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise DeployError(
            f"cannot read deployment {namespace}/{name}: {api_error_message(exc)}"
        ) from exc
    template = found.spec.template
    container = template.spec.containers[0]
    version = (template.metadata.labels or {}).get(_VERSION_LABEL)
    if not version:
        raise DeployError(
            f"deployment {namespace}/{name} has no {_VERSION_LABEL} label on its pods, so its "
            "version is unknown",
            hint="it was not made by 'modelfleet deploy'; remove it or choose another --namespace",
        )
    return Stable(
        name=name,
        version=version,
        image=container.image,
        replicas=found.spec.replicas or 0,
        state_secret=_state_secret(container),
    )


@dataclass(frozen=True)
class ReleasePlan:
    """How a release runs: canary size, judging window and rules, rollout timeout."""

    canary_replicas: int = 1
    window_s: float = 300.0
    max_window_s: float | None = None  # None: the window, never longer
    thresholds: Thresholds = field(default_factory=Thresholds)
    timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.canary_replicas < 1:
            raise DeployError(f"--canary-replicas must be at least 1, got {self.canary_replicas}")
        if self.window_s <= 0:
            raise DeployError(f"--window must be above 0 s, got {self.window_s:g}")
        if self.max_window_s is not None and self.max_window_s < self.window_s:
            raise DeployError(
                f"--max-window {self.max_window_s:g} s is shorter than --window {self.window_s:g} s"
            )

    def share(self, stable_replicas: int) -> float:
        """The canary's share of the Service's traffic beside ``stable_replicas`` pods."""
        return self.canary_replicas / (self.canary_replicas + stable_replicas)


@dataclass(frozen=True)
class ReleaseOutcome:
    """What a release did, and the verdict it acted on."""

    action: Action
    candidate: str
    stable: Stable | None
    verdict: Verdict | None = None
    note: str = ""

    @property
    def succeeded(self) -> bool:
        """Whether the candidate serves the environment now."""
        return self.action != "rolled-back"

    @property
    def replaced(self) -> int | None:
        """The version the candidate took over from in the cluster, if it did."""
        if self.action != "promoted" or self.stable is None or not self.stable.version.isdigit():
            return None
        return int(self.stable.version)

    def summary(self) -> str:
        """One line for the audit trail."""
        against = f" (stable: version {self.stable.version})" if self.stable else ""
        detail = self.verdict.summary() if self.verdict else self.note
        return f"release {self.action}{against}; {detail}"[:1000]

    def as_dict(self) -> dict[str, Any]:
        """The outcome as JSON-ready values."""
        return {
            "action": self.action,
            "candidate": self.candidate,
            "stable": None if self.stable is None else asdict(self.stable),
            "note": self.note,
            "verdict": None if self.verdict is None else self.verdict.as_dict(),
        }


Say = Callable[[str], None]


def _roll_out(
    cluster: Cluster, objects: list[Manifest], name: str, namespace: str, timeout: float
) -> Rollout:
    apply_objects(cluster, [to_dict(o) for o in objects])
    return wait_rollout(cluster, name, namespace, timeout=timeout)


def remove_canary(cluster: Cluster, spec: DeploySpec) -> None:
    """Delete the canary Deployment (if any) and the serve configs nothing mounts any more."""
    k8s = require_kubernetes()
    apps = k8s.client.AppsV1Api(cluster.api)
    try:
        apps.delete_namespaced_deployment(canary_name(spec.name), spec.ns)
    except k8s.client.ApiException as exc:
        if exc.status != 404:
            raise DeployError(
                f"cannot delete the canary {spec.ns}/{canary_name(spec.name)}: "
                f"{api_error_message(exc)}",
                hint=f"delete it yourself: kubectl -n {spec.ns} delete deployment "
                f"{canary_name(spec.name)}",
            ) from exc
    prune_serve_configs(cluster, spec.name, spec.ns)


def run_release(
    cluster: Cluster,
    spec: DeploySpec,
    stable: Stable | None,
    plan: ReleasePlan,
    *,
    say: Say = lambda _: None,
    sleep: Callable[[float], None] = time.sleep,
    source: MetricsSource | None = None,
) -> ReleaseOutcome:
    """Take ``spec``'s version to the cluster through a canary judged against ``stable``."""
    candidate = str(spec.version)
    where = f"{spec.ns}/{spec.name}"
    if stable is None:
        say(f"no deployment {where}: a first release, deployed without a canary")
        _roll_out(cluster, render(spec), spec.name, spec.ns, plan.timeout_s)
        prune_serve_configs(cluster, spec.name, spec.ns)
        return ReleaseOutcome("first-release", candidate, None, note="no stable to judge against")
    if stable.version == candidate:
        note = f"{where} already serves version {candidate}"
        return ReleaseOutcome("unchanged", candidate, stable, note=note)
    canary = canary_name(spec.name)
    exposition_parser()  # not installed: fail before the cluster changes, not after
    try:
        share = plan.share(stable.replicas)
        say(f"starting {spec.ns}/{canary}: {plan.canary_replicas} pod(s), ~{share:.0%} of traffic")
        _roll_out(
            cluster, render_canary(spec, plan.canary_replicas), canary, spec.ns, plan.timeout_s
        )
        scraper = source or PodProxyScraper(cluster, spec.ns, track_selectors(spec))
        versions = {STABLE: stable.version, CANARY: candidate}
        verdict = watch(
            scraper,
            spec.model,
            versions,
            plan.thresholds,
            window_s=plan.window_s,
            max_window_s=plan.max_window_s,
            sleep=sleep,
            say=say,
        )
    except DeployError as exc:
        remove_canary(cluster, spec)
        return ReleaseOutcome("rolled-back", candidate, stable, note=f"canary failed: {exc}")
    except BaseException:
        remove_canary(cluster, spec)  # interrupted: leave the environment as it was
        raise
    if not verdict.promote:
        remove_canary(cluster, spec)
        return ReleaseOutcome("rolled-back", candidate, stable, verdict)
    say(f"promoting: rolling {where} out to version {candidate}")
    try:
        _roll_out(cluster, render(spec), spec.name, spec.ns, plan.timeout_s)
    except DeployError as exc:
        raise DeployError(
            f"the canary passed, but rolling {where} out to version {candidate} failed: {exc}",
            hint=f"the canary {canary} still runs; 'modelfleet rollback {spec.model} --env "
            f"{spec.environment.value}' returns the stable to version {stable.version}",
        ) from exc
    remove_canary(cluster, spec)
    return ReleaseOutcome("promoted", candidate, stable, verdict)
