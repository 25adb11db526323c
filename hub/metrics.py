"""Prometheus metrics, served at /metrics for the whole `web` (ADR 0051).

With several daphne processes (config/web.py) each writes its values to PROMETHEUS_MULTIPROC_DIR
and a scrape sums them (prometheus_client's multiprocess mode): counters and histograms add up;
the open-connections gauge is the sum over the processes alive (`livesum`)."""

from functools import cache

from prometheus_client import Counter, Gauge, Histogram

WS_CONNECTIONS_OPEN = Gauge(
    "hub_ws_connections_open", "WebSocket connections currently open", multiprocess_mode="livesum"
)
WS_CONNECTIONS_TOTAL = Counter("hub_ws_connections_total", "WebSocket connections accepted")
WS_CLOSES = Counter("hub_ws_closes_total", "WebSocket connections closed by the hub", ["code"])
WS_FRAMES_IN = Counter("hub_ws_frames_in_total", "Frames received from clients", ["type"])
WS_FRAMES_OUT = Counter("hub_ws_frames_out_total", "Frames sent to clients", ["kind"])
ERRORS = Counter("hub_errors_total", "Error replies by code and transport", ["code", "transport"])
SEND_BATCH_SIZE = Histogram(
    "hub_send_batch_size", "Messages stored per group commit", buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500)
)
SEND_REFUSED_BUSY = Counter("hub_send_busy_total", "message.send answered busy (queue full)")
PUBLISH_FAILED = Counter("hub_publish_failed_total", "Event PUBLISHes dropped because Redis failed")
ROUTER_RECONNECTS = Counter(
    "hub_router_reconnects_total", "Router attempts to get its Redis subscription back", ["outcome"]
)
RESYNCS = Counter("hub_resyncs_total", "resync events sent to connections that may have missed events")


@cache
def labelled(metric: Counter, *values: str) -> Counter:
    """`metric.labels(*values)`, looked up once: labels() takes a lock and builds keys on every call,
    and the WebSocket path counts every frame (label values here come from fixed sets)."""
    return metric.labels(*values)
