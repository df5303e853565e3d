"""Why a pod is not running, read from the official client's pod objects."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client

from modelfleet.kube import STUCK_REASONS, PodWait, container_waits, scheduling_wait


def _pod(document: dict[str, Any]) -> Any:
    """A ``V1Pod`` decoded by the client from the JSON the API server sends."""
    return client.ApiClient().deserialize(json.dumps(document), "V1Pod", "application/json")


def _status(name: str, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "image": "localhost/modelfleet/iris:1",
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "state": state,
    }


PULLING = _pod(
    {
        "metadata": {"name": "iris-7d9f-abcde"},
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [
                _status("sidecar", {"running": {"startedAt": "2025-01-01T00:00:00Z"}}),
                _status(
                    "server",
                    {
                        "waiting": {
                            "reason": "ImagePullBackOff",
                            "message": 'Back-off pulling image "localhost/modelfleet/iris:1"',
                        }
                    },
                ),
            ],
        },
    }
)

UNSCHEDULABLE = _pod(
    {
        "metadata": {"name": "train-1-xyz"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                }
            ],
        },
    }
)


def test_a_container_that_cannot_pull_its_image_is_stuck() -> None:
    assert container_waits(PULLING) == [
        PodWait(
            pod="iris-7d9f-abcde",
            reason="ImagePullBackOff",
            message='Back-off pulling image "localhost/modelfleet/iris:1"',
            container="server",
        )
    ]
    (wait,) = container_waits(PULLING)
    assert wait.stuck
    assert wait.meaning == "the image cannot be pulled"
    assert scheduling_wait(PULLING) is None


def test_a_pod_no_node_can_take_is_held_by_the_scheduler() -> None:
    wait = scheduling_wait(UNSCHEDULABLE)
    assert wait == PodWait(
        pod="train-1-xyz",
        reason="Unschedulable",
        message="0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
    )
    assert not wait.stuck  # a node may be added; only container reasons are hopeless
    assert container_waits(UNSCHEDULABLE) == []


def test_a_wait_that_passes_by_itself_is_reported_but_not_stuck() -> None:
    creating = client.V1Pod(
        metadata=client.V1ObjectMeta(name="iris-1"),
        status=client.V1PodStatus(
            container_statuses=[
                client.V1ContainerStatus(
                    name="server",
                    image="iris:1",
                    image_id="",
                    ready=False,
                    restart_count=0,
                    state=client.V1ContainerState(
                        waiting=client.V1ContainerStateWaiting(reason="ContainerCreating")
                    ),
                )
            ]
        ),
    )
    (wait,) = container_waits(creating)
    assert (wait.reason, wait.message, wait.stuck, wait.meaning) == (
        "ContainerCreating",
        "",
        False,
        "",
    )


def test_a_running_or_brand_new_pod_holds_nothing() -> None:
    running = _pod(
        {
            "metadata": {"name": "iris-2"},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [
                    _status("server", {"running": {"startedAt": "2025-01-01T00:00:00Z"}})
                ],
            },
        }
    )
    fresh = _pod({"metadata": {"name": "iris-3"}})  # no status yet
    for pod in (running, fresh):
        assert container_waits(pod) == []
        assert scheduling_wait(pod) is None


def test_every_stuck_reason_is_explained_in_words() -> None:
    assert {"ErrImagePull", "ImagePullBackOff", "CrashLoopBackOff"} <= set(STUCK_REASONS)
    assert all(meaning and meaning[0].islower() for meaning in STUCK_REASONS.values())
