"""Prometheus metrics, exposed at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CALLS_STARTED = Counter("cti_calls_started_total", "Inbound calls that entered the service")
CALLS_ENDED = Counter("cti_calls_ended_total", "Calls ended, by hang-up cause", ["cause"])
CALLS_ACTIVE = Gauge("cti_calls_active", "Calls in progress")
ARI_CONNECTED = Gauge("cti_ari_connected", "1 while the ARI event socket is connected")
ARI_RECONNECTS = Counter("cti_ari_connects_total", "ARI event socket (re)connections")
ARI_REQUEST_SECONDS = Histogram(
    "cti_ari_request_seconds", "ARI REST round trips", buckets=(0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
)
EVENTS = Counter("cti_events_total", "Domain events published, by type", ["type"])
BUS_LAG_SECONDS = Histogram(
    "cti_event_metrics_lag_seconds", "From an event's time to the metrics subscriber seeing it",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
