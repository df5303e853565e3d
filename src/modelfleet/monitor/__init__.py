"""Watching served models: alert rules, dashboards, drift, live accuracy, retraining."""

from __future__ import annotations

from modelfleet.monitor.rules import alert_rules

__all__ = ["alert_rules"]
