"""The monitoring control plane: alert rules, the Grafana dashboard, the retrain trigger
and the chain that follows a retraining job to its release stage.

The statistics these build on live in :mod:`modelfleet.stats`; what a running server records
(predictions, feedback, live accuracy, drift) lives in :mod:`modelfleet.serving.live`.
"""

from __future__ import annotations

from modelfleet.monitor.chain import ChainEvent, RetrainChain
from modelfleet.monitor.dashboard import render_dashboard
from modelfleet.monitor.retrain import RetrainPolicy, RetrainTrigger
from modelfleet.monitor.rules import alert_rules, render_rules_file, render_yaml

__all__ = [
    "ChainEvent",
    "RetrainChain",
    "RetrainPolicy",
    "RetrainTrigger",
    "alert_rules",
    "render_dashboard",
    "render_rules_file",
    "render_yaml",
]
