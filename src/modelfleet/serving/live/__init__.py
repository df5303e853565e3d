"""The live side of serving: prediction records, feedback, live accuracy, drift, the summary.

A served model's :class:`ModelWatch` records what it answered, joins true labels sent as
feedback, keeps the live accuracy that gates the output cache and scores input drift against
the training profile; :class:`Summarizer` turns the server's own metrics into the summary
behind ``/monitor/summary`` and the page at ``/``.
"""

from __future__ import annotations

from modelfleet.serving.live.feedback import (
    MAX_ID_LENGTH,
    FeedbackStore,
    PredictionStore,
    check_request_id,
    parse_feedback,
)
from modelfleet.serving.live.link import StateLink
from modelfleet.serving.live.page import monitor_page
from modelfleet.serving.live.stores import STATE_URL_ENV, backend_of, open_store
from modelfleet.serving.live.summary import Summarizer
from modelfleet.serving.live.tower import Watchtower
from modelfleet.serving.live.watch import ModelWatch

__all__ = [
    "MAX_ID_LENGTH",
    "STATE_URL_ENV",
    "FeedbackStore",
    "ModelWatch",
    "PredictionStore",
    "StateLink",
    "Summarizer",
    "Watchtower",
    "backend_of",
    "check_request_id",
    "monitor_page",
    "open_store",
    "parse_feedback",
]
