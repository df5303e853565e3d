"""Reading why a pod is not running: the scheduler cannot place it, or a container waits.

Works on the official client's ``V1Pod`` objects as the API returns them; callers decide
what a wait means for them (a rollout fails fast, a training job reports it and waits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Reasons a container waits that will not fix themselves, and what they mean.
STUCK_REASONS = {
    "ErrImagePull": "the image cannot be pulled",
    "ImagePullBackOff": "the image cannot be pulled",
    "InvalidImageName": "the image name is invalid",
    "CrashLoopBackOff": "the server keeps crashing",
    "CreateContainerConfigError": "the container configuration is invalid",
}


@dataclass(frozen=True)
class PodWait:
    """One reason a pod is held: ``reason`` is the API's word, ``message`` its detail."""

    pod: str
    reason: str
    message: str = ""
    container: str | None = None  # None: the scheduler, not a container, holds the pod

    @property
    def stuck(self) -> bool:
        """Whether the wait will not end by itself (a bad image, a crash loop)."""
        return self.reason in STUCK_REASONS

    @property
    def meaning(self) -> str:
        """What a stuck reason means in plain words ("" for a wait that may pass)."""
        return STUCK_REASONS.get(self.reason, "")


def container_waits(pod: Any) -> list[PodWait]:
    """Every container of ``pod`` that waits with a reason, in the pod's container order."""
    status = pod.status
    waits = []
    for container in (status.container_statuses if status else None) or []:
        waiting = container.state.waiting if container.state else None
        if waiting is not None and waiting.reason:
            waits.append(
                PodWait(pod.metadata.name, waiting.reason, waiting.message or "", container.name)
            )
    return waits


def scheduling_wait(pod: Any) -> PodWait | None:
    """Why the scheduler has not placed ``pod`` (reason ``Unschedulable`` when no node fits)."""
    status = pod.status
    for condition in (status.conditions if status else None) or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return PodWait(pod.metadata.name, condition.reason or "", condition.message or "")
    return None
