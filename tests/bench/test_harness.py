"""The benchmark harness itself: its tiny mode against the bare relay (seconds, no database), and
the pieces that decide what a result means (percentiles, loss accounting, frame parsing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bench import harness, loadgen

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.e2e
def test_tiny_run_against_the_relay_measures_every_scenario(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--targets", "relay", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    relay = json.loads((tmp_path / "results.json").read_text())["runs"]["relay"]

    (chat,) = relay["chat"]
    assert chat["offered"] == chat["sent"] == chat["delivered"] == 100
    assert chat["lost"] == chat["refused"] == 0 and not chat["closes"]
    assert 0 < chat["p50_ms"] <= chat["p99_ms"] <= chat["max_ms"]
    assert chat["held"] is True

    idle = relay["idle"]
    assert idle["held"] == idle["held_at_end"] == 20 and not idle["failures"]
    assert idle["rss_after_kib"] >= idle["rss_before_kib"] > 0

    storm = relay["storm"]
    assert storm["ok"] == storm["open_at_end"] == 20 and storm["failed"] == 0 and storm["rate_per_s"] > 0

    fanout = relay["fanout"]
    assert fanout["devices"] == 10 and fanout["missing"] == 0 and fanout["unconnected"] == 0
    assert fanout["rounds"][0]["received"] == 10 and fanout["all_ms"] >= fanout["p50_ms"] > 0

    page = (tmp_path / "results.md").read_text()
    assert "| bare `websockets` relay |" in page and "## Connection storm" in page
    assert (tmp_path / "chat.png").read_bytes()[:8] == PNG
    assert (tmp_path / "capacity.png").read_bytes()[:8] == PNG


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert harness.pct(values, 50) == 50.0
    assert harness.pct(values, 99) == 99.0
    assert harness.pct([3.0], 99) == 3.0
    assert harness.pct([], 50) is None


def test_a_rate_is_held_only_without_loss_refusal_or_closes_and_within_50_ms() -> None:
    def worker(**over: object) -> dict[str, object]:
        report: dict[str, object] = {
            "offered": 100,
            "sent": 100,
            "delivered": 100,
            "lost": 0,
            "refused": 0,
            "acked": 100,
            "latencies_ms": [1.0] * 100,
            "ack_latencies_ms": [],
            "lag_ms": [0.1],
            "errors": {},
            "closes": {},
            "connect_failures": {},
            "pushed_back": 0,
            "send_failures": 0,
            "send_window_s": 1.0,
            "drain_s": 0.0,
            "generator_cpu_s": 0.1,
        }
        return {**report, **over}

    assert harness.summarize_chat(100, 1.0, [worker()])["held"] is True
    lossy = harness.summarize_chat(100, 1.0, [worker(lost=1, delivered=99)])
    assert lossy["held"] is False and lossy["loss_pct"] == 1.0
    assert harness.summarize_chat(100, 1.0, [worker(latencies_ms=[60.0] * 100)])["held"] is False
    assert harness.summarize_chat(100, 1.0, [worker(closes={"1011": 2})])["held"] is False
    assert harness.summarize_chat(100, 1.0, [worker(sent=90)])["held"] is False


def test_hub_frames_are_told_apart() -> None:
    hub = loadgen.HubProto(1)
    created = {"type": "message.created", "data": {"message": {"client_id": "c1", "seq": 3}}}
    assert (hub.decode(orjson.dumps(created)).kind, hub.decode(orjson.dumps(created)).key) == ("msg", "c1")
    assert hub.decode(b'{"type":"reply","ref":"c1","data":{}}').kind == "ack"
    error = hub.decode(b'{"type":"error","ref":"c1","data":{"code":"rate_limited","retry_after_s":1}}')
    assert (error.kind, error.key, error.data["code"]) == ("error", "c1", "rate_limited")
    sent = orjson.loads(hub.encode("c1", "conv"))
    assert sent == {
        "type": "message.send",
        "ref": "c1",
        "data": {"conversation_id": "conv", "client_id": "c1", "body": loadgen.BODY},
    }


def test_raw_client_frames() -> None:
    buf = bytearray(b"\x81\x05hello\x88\x02\x03\xe8")
    assert loadgen._parse_frame(buf) == (0x1, b"hello")
    assert loadgen._parse_frame(buf) == (0x8, b"\x03\xe8")
    assert loadgen._parse_frame(buf) is None
    long = bytearray(b"\x81\x7e\x01\x00" + b"x" * 256)
    assert loadgen._parse_frame(long) == (0x1, b"x" * 256)
    assert loadgen._frame(0x1, b"hi") == b"\x81\x82\x00\x00\x00\x00hi"
