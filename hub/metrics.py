"""Prometheus metrics, served at /metrics for the whole `web` (ADR 0051).

With several daphne processes (config/web.py) each writes its values to PROMETHEUS_MULTIPROC_DIR
and a scrape sums them (prometheus_client's multiprocess mode): counters and histograms add up;
the open-connections gauge is the sum over the processes alive (`livesum`)."""

import asyncio
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


class FrameCounts:
    """Counts of the WebSocket path (a few per chat message), added to their counters once per FLUSH_S.

    In multiprocess mode every `inc` takes a lock and writes an mmap'd file: about 2 % of a web
    process's CPU at 1,000 msgs/s (py-spy, ADR 0057). Counted here in a dict instead and flushed
    by one timer of the loop, a scrape lags by at most FLUSH_S; what a dying process had not
    flushed yet is lost with it (counts, not records)."""

    FLUSH_S = 1.0

    def __init__(self) -> None:
        self._counts: dict[Counter, int] = {}
        self._flushing: asyncio.TimerHandle | None = None

    def add(self, child: Counter) -> None:
        self._counts[child] = self._counts.get(child, 0) + 1
        if self._flushing is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (sync code): at once
                self.flush()
                return
            self._flushing = loop.call_later(self.FLUSH_S, self.flush)

    def flush(self) -> None:
        counts, self._counts, self._flushing = self._counts, {}, None
        for child, n in counts.items():
            child.inc(n)


_frame_counts = FrameCounts()


def count_frame(metric: Counter, *values: str) -> None:
    """One WebSocket frame in or out (`hub_ws_frames_in_total` / `_out_total`), buffered (see FrameCounts)."""
    _frame_counts.add(labelled(metric, *values))

