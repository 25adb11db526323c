"""`make bench`: the hub and its two baselines under the same load, in one run, on this machine.

For every target (bare relay, Channels tutorial, hub) and scenario (chat at rising rates, idle
connections, connection storm, fan-out) the harness starts a fresh server, runs the load generator's
worker processes against it, reads the server's memory and CPU from /proc, stops it, and finally
writes bench/results/results.{json,md} and PNG plots. See README.md, "Benchmarks"."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import multiprocessing as mp
import platform
import queue
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import loadgen, report
from bench.servers import LABELS, ROOT, RUN, TARGETS, Server, Services, make_server

DEFAULT_OUT = ROOT / "bench" / "results"
# `--profile-gil`: sample only the thread holding the GIL (where CPU goes, not where threads wait).
PY_SPY_EXTRA: list[str] = []
SCENARIOS = ("chat", "idle", "storm", "fanout")

# Chat measures capacity: at 3,000 msgs/s over 100 rooms each simulated user sends 15 a second,
# past the per-user limit (10/s) that stops abusive clients; that limit is lifted here.
CHAT_HUB_ENV = {"HUB_SEND_RATE_BURST": "100000", "HUB_SEND_RATE_PER_S": "100000"}

PRESETS: dict[str, dict[str, Any]] = {
    # Shorter runs for a quick look; the same scenarios, smaller.
    "quick": {
        "duration": 3.0,
        "rates": "500,1000,2000",
        "idle": 2000,
        "storm": 1000,
        "storm_concurrency": 100,
        "fanout_users": 300,
        "fanout_devices": 2,
        "fanout_rounds": 2,
        "drain": 5.0,
    },
    # The smoke test's size: seconds, a handful of clients.
    "tiny": {
        "duration": 1.0,
        "rates": "100",
        "rooms": 4,
        "procs": 2,
        "chat_procs": 2,
        "idle": 20,
        "storm": 20,
        "storm_concurrency": 4,
        "fanout_users": 5,
        "fanout_devices": 2,
        "fanout_rounds": 1,
        "drain": 3.0,
        "settle": 0.2,
    },
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="make bench ARGS=", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs (3 s per rate, 2,000 idle, ...)")
    parser.add_argument("--tiny", action="store_true", help="a few clients for a second (the smoke test)")
    parser.add_argument(
        "--targets",
        default="relay,tutorial,hub",
        help=f"comma-separated, from {', '.join(TARGETS)} (default: relay,tutorial,hub)",
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated, from chat,idle,storm,fanout")
    parser.add_argument("--rates", default="500,1000,1500,2000,3000", help="chat rates, msgs/s across all rooms")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per chat rate")
    parser.add_argument(
        "--drain",
        type=float,
        default=10.0,
        help="after a rate, seconds without any delivery after which what is missing counts as lost "
        "(waiting goes on while deliveries still come, up to 120 s)",
    )
    parser.add_argument("--rooms", type=int, default=100, help="two-party rooms in the chat scenario")
    parser.add_argument("--procs", type=int, default=4, help="load generator processes (idle, storm, fan-out)")
    parser.add_argument(
        "--chat-procs", type=int, default=2, help="load generator processes for chat (fewer: less scheduling noise)"
    )
    parser.add_argument("--idle", type=int, default=10_000, help="idle connections to hold")
    parser.add_argument("--storm", type=int, default=5_000, help="connects in the storm")
    parser.add_argument("--storm-concurrency", type=int, default=200, help="connects in flight at once")
    parser.add_argument("--fanout-users", type=int, default=1_000)
    parser.add_argument("--fanout-devices", type=int, default=3, help="connections per user")
    parser.add_argument("--fanout-rounds", type=int, default=3)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to let memory settle before reading it")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results.{json,md} and plots go")
    parser.add_argument(
        "--hub-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the hub's processes (experiments)",
    )
    parser.add_argument("--profile-gil", action="store_true", help="with --profile: only the GIL holder")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the server during each chat rate (flame graphs in OUT/raw/)",
    )
    preset_args, _ = parser.parse_known_args(argv)
    for name in ("quick", "tiny"):
        if getattr(preset_args, name):
            parser.set_defaults(**PRESETS[name])
    args = parser.parse_args(argv)
    if args.profile_gil:
        PY_SPY_EXTRA.append("--gil")
    args.targets = [t for t in args.targets.split(",") if t]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    args.rates = [int(r) for r in str(args.rates).split(",") if r]
    for t in args.targets:
        if t not in TARGETS:
            parser.error(f"unknown target {t!r}")
    for s in args.scenarios:
        if s not in SCENARIOS:
            parser.error(f"unknown scenario {s!r}")
    return args


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


def raise_fd_limit() -> int:
    """10,000 connections need more than the usual 1,024 descriptors; children inherit this."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --------------------------------------------------------------------------------------------
# Worker processes
# --------------------------------------------------------------------------------------------


class Pool:
    """Worker processes of one scenario run, and the phase protocol that paces them."""

    def __init__(self, scenario: str, specs: list[dict[str, Any]]) -> None:
        ctx = mp.get_context("spawn")
        self.queue = ctx.Queue()
        self.phase = ctx.Value("i", 0, lock=False)
        self.start_at = ctx.Value("d", 0.0, lock=False)
        self.procs = [
            ctx.Process(
                target=loadgen.worker_main,
                args=(scenario, spec, w, self.queue, self.phase, self.start_at),
                daemon=True,
            )
            for w, spec in enumerate(specs)
        ]

    def __enter__(self) -> Pool:
        for p in self.procs:
            p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.join(timeout=30 if exc[0] is None else 1)
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(5)

    def collect(self, timeout: float) -> list[dict[str, Any]]:
        """One report from every worker, in worker order; a worker's traceback is raised here."""
        got: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(got) < len(self.procs):
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers {sorted(set(range(len(self.procs))) - set(got))} did not report")
            try:
                status, worker, info = self.queue.get(timeout=0.5)
            except queue.Empty:
                dead = [w for w, p in enumerate(self.procs) if not p.is_alive() and w not in got]
                if dead:
                    raise RuntimeError(f"worker(s) {dead} died without reporting") from None
                continue
            if status == "error":
                raise RuntimeError(f"worker {worker} failed:\n{info}")
            got[worker] = info
        return [got[w] for w in range(len(self.procs))]

    def open_phase(self, number: int, delay: float = 0.3) -> float:
        """Let every worker into phase `number`, starting together `delay` seconds from now."""
        start_at = time.perf_counter() + delay
        self.start_at.value = start_at
        self.phase.value = number
        return start_at


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.services: Services | None = None
        self.demo: dict[str, Any] = {}
        self.hub_env = dict(kv.split("=", 1) for kv in args.hub_env)
        self.raw = args.out / "raw"
        self.results: dict[str, Any] = {"meta": machine_info(args), "runs": {}}

    # -- set-up -----------------------------------------------------------------------------

    def setup(self) -> None:
        RUN.mkdir(parents=True, exist_ok=True)
        self.raw.mkdir(parents=True, exist_ok=True)
        if any(t != "relay" for t in self.args.targets):
            log("starting private PostgreSQL and Redis (.run/bench/services)")
            self.services = Services()
            self.services.start()
        if "hub" in self.args.targets:
            a = self.args
            pairs = max(a.rooms, math.ceil(a.idle / 2), math.ceil(a.storm / 2), math.ceil(a.fanout_users / 2))
            log(f"migrating and seeding the hub's database (seed_demo --pairs {pairs})")
            assert self.services is not None
            self.demo = self.services.prepare_hub(pairs, self.hub_env)

    def teardown(self) -> None:
        if self.services is not None:
            self.services.stop()

    def server(self, kind: str, **hub_env: str) -> Server:
        if self.services is not None:
            self.services.flush_redis()
        return make_server(kind, self.services, {**self.hub_env, **hub_env}).start()

    def hub_tokens(self, count: int) -> list[str]:
        """Tokens of `count` distinct users (customers and providers of the seeded pairs)."""
        users = [u for pair in self.demo["pairs"] for u in (pair["customer"], pair["provider"])]
        if count > len(users):
            raise RuntimeError(f"{count} users needed, {len(users)} seeded")
        return [u["token"] for u in users[:count]]

    def profiler(self, server: Server, name: str) -> Profiler:
        return Profiler(self.args.profile, server, self.raw / f"profile-{server.kind}-{name}")

    def split_counts(self, total: int) -> list[int]:
        procs = max(1, min(self.args.procs, total))
        return [total // procs + (1 if w < total % procs else 0) for w in range(procs)]

    def run(self) -> None:
        self.setup()
        try:
            for kind in self.args.targets:
                runs = self.results["runs"].setdefault(kind, {"label": LABELS[kind]})
                for scenario in self.args.scenarios:
                    if scenario == "chat":
                        runs["chat"] = [self.attempt(self.chat, kind, rate) for rate in self.args.rates]
                    else:
                        runs[scenario] = self.attempt(getattr(self, scenario), kind)
                    self.save()
        finally:
            self.teardown()
        self.results["meta"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
        self.save()
        report.write(self.results, self.args.out)
        log(f"results in {self.args.out}/results.md")

    def attempt(self, func: Any, kind: str, *args: Any) -> dict[str, Any]:
        """One scenario run; a failure is recorded in the results (and shown) rather than ending the run."""
        try:
            return dict(func(kind, *args))
        except Exception as exc:
            log(f"   {kind}: {func.__name__} {' '.join(map(str, args))} failed: {exc}")
            failed: dict[str, Any] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            if args:
                failed["rate"] = args[0]
            return failed

    def save(self) -> None:
        (self.args.out / "results.json").write_text(json.dumps(self.results, indent=1))

    # -- chat -------------------------------------------------------------------------------

    def chat(self, kind: str, rate: int) -> dict[str, Any]:
        a = self.args
        if kind == "hub":
            rooms = [
                {"name": p["conversation_id"], "tokens": [p["customer"]["token"], p["provider"]["token"]]}
                for p in self.demo["pairs"][: a.rooms]
            ]
        else:
            rooms = [{"name": f"room{i}"} for i in range(a.rooms)]
        server = self.server(kind, **CHAT_HUB_ENV)
        parts = [part for part in loadgen.split(rooms, a.chat_procs) if part]
        specs = [
            {
                "target": server.target,
                "rooms": part,
                "rate": rate * len(part) / len(rooms),
                "duration": a.duration,
                "drain_s": a.drain,
            }
            for part in parts
        ]
        log(f"{kind}: chat at {rate} msgs/s across {len(rooms)} rooms for {a.duration:g} s")
        try:
            with Pool("chat", specs) as pool:
                pool.collect(timeout=180)
                cpu0, wall0 = server.cpu_s(), time.perf_counter()
                with self.profiler(server, f"chat-{rate}"):
                    pool.open_phase(1)
                    reports = pool.collect(timeout=a.duration + a.drain + 300)
                cpu1, wall1 = server.cpu_s(), time.perf_counter()
        finally:
            alive = server.alive()
            server.stop()
        result = summarize_chat(rate, a.duration, reports)
        result["server_cpu_pct"] = round(100 * (cpu1 - cpu0) / (wall1 - wall0), 1)
        # CPU per message does not depend on what else the machine runs meanwhile; latency does.
        result["server_cpu_ms_per_msg"] = round(1000 * (cpu1 - cpu0) / result["sent"], 3) if result["sent"] else None
        result["server_alive"] = alive
        log("   " + report.chat_line(result))
        return result

    # -- idle connections -------------------------------------------------------------------

    def idle(self, kind: str) -> dict[str, Any]:
        a = self.args
        server = self.server(kind, WEB_CONCURRENCY="1")  # the target is per web process
        counts = self.split_counts(a.idle)
        tokens = self.hub_tokens(a.idle) if kind == "hub" else None
        specs = []
        offset = 0
        for n in counts:
            spec: dict[str, Any] = {"target": server.target, "count": n, "concurrency": 50}
            if tokens:
                spec["tokens"] = tokens[offset : offset + n]
            offset += n
            specs.append(spec)
        log(f"{kind}: holding {a.idle} idle connections")
        try:
            warm_up(server, self.hub_tokens(10) if kind == "hub" else None)
            time.sleep(a.settle)
            rss0, redis0 = server.rss_kib(), self.redis_kib(kind)
            with Pool("idle", specs) as pool, self.profiler(server, "idle"):
                opened = pool.collect(timeout=900)
                time.sleep(a.settle)
                rss1, redis1 = server.rss_kib(), self.redis_kib(kind)
                pool.open_phase(1, delay=0)
                ended = pool.collect(timeout=120)
        finally:
            server.stop()
        held = sum(r["open"] for r in opened)
        failures = sum_counters(r["failures"] for r in opened)
        result = {
            "requested": a.idle,
            "held": held,
            "held_at_end": sum(r["open_at_end"] for r in ended),
            "failures": dict(failures),
            "connect_s": max(r["connect_s"] for r in opened),
            "rss_before_kib": rss0,
            "rss_after_kib": rss1,
            "kib_per_conn": round((rss1 - rss0) / held, 2) if held else None,
            "redis_kib_per_conn": round((redis1 - redis0) / held, 2) if held and redis0 is not None else None,
        }
        log("   " + report.idle_line(result))
        return result

    def redis_kib(self, kind: str) -> float | None:
        """Redis's memory in use, for the servers that keep per-connection state there."""
        return self.services.redis_used_kib() if self.services is not None and kind != "relay" else None

    # -- connection storm -------------------------------------------------------------------

    def storm(self, kind: str) -> dict[str, Any]:
        a = self.args
        server = self.server(kind)
        counts = self.split_counts(a.storm)
        conc = self.split_counts(a.storm_concurrency)
        tokens = self.hub_tokens(a.storm) if kind == "hub" else None
        specs = []
        offset = 0
        for w, n in enumerate(counts):
            spec: dict[str, Any] = {"target": server.target, "count": n, "concurrency": conc[w % len(conc)]}
            if tokens:
                spec["tokens"] = tokens[offset : offset + n]
            offset += n
            specs.append(spec)
        log(f"{kind}: storm of {a.storm} connects, {a.storm_concurrency} in flight")
        try:
            warm_up(server, self.hub_tokens(10) if kind == "hub" else None)
            with Pool("storm", specs) as pool:
                pool.collect(timeout=120)
                with self.profiler(server, "storm"):
                    start_at = pool.open_phase(1)
                    reports = pool.collect(timeout=600)
                pool.open_phase(2, delay=0)
                ended = pool.collect(timeout=120)
        finally:
            alive = server.alive()
            server.stop()
        ok = sum(r["ok"] for r in reports)
        last = max(r["last_done_at"] for r in reports)
        connect_ms = [x for r in reports for x in r["connect_ms"]]
        result = {
            "connects": a.storm,
            "concurrency": a.storm_concurrency,
            "ok": ok,
            "failed": a.storm - ok,
            "failures": dict(sum_counters(r["failures"] for r in reports)),
            "seconds": round(last - start_at, 3),
            "rate_per_s": round(ok / (last - start_at), 1) if ok else 0.0,
            "connect_p50_ms": pct(connect_ms, 50),
            "connect_p99_ms": pct(connect_ms, 99),
            "open_at_end": sum(r["open_at_end"] for r in ended),
            "server_alive": alive,
        }
        log("   " + report.storm_line(result))
        return result

    # -- fan-out ----------------------------------------------------------------------------

    def fanout(self, kind: str) -> dict[str, Any]:
        a = self.args
        devices = a.fanout_users * a.fanout_devices
        server = self.server(kind)
        counts = self.split_counts(devices)
        if kind == "hub":
            tokens = [t for t in self.hub_tokens(a.fanout_users) for _ in range(a.fanout_devices)]
            user_ids = [u["id"] for p in self.demo["pairs"] for u in (p["customer"], p["provider"])][: a.fanout_users]
        specs = []
        offset = 0
        for n in counts:
            spec: dict[str, Any] = {
                "target": server.target,
                "count": n,
                "rounds": a.fanout_rounds,
                "room": "fanout",
                "concurrency": 50,
            }
            if kind == "hub":
                spec["tokens"] = tokens[offset : offset + n]
            offset += n
            specs.append(spec)
        log(f"{kind}: fan-out of one event to {a.fanout_users} users x {a.fanout_devices} devices")
        rounds: list[dict[str, Any]] = []
        emitter: subprocess.Popen[str] | None = None
        try:
            with Pool("fanout", specs) as pool, contextlib.ExitStack() as stack:
                receivers = pool.collect(timeout=600)
                if kind == "hub":
                    emitter = start_emitter(user_ids, self.services, self.hub_env)  # type: ignore[arg-type]
                for r in range(a.fanout_rounds):
                    time.sleep(min(0.5, a.settle))
                    if r == a.fanout_rounds - 1:
                        stack.enter_context(self.profiler(server, "fanout"))
                    pool.open_phase(r + 1, delay=0)
                    if emitter is not None:
                        t0, t_emitted = hub_trigger(emitter, r)
                    else:
                        t0, t_emitted = asyncio.run(baseline_trigger(server, r))
                    reports = pool.collect(timeout=120)
                    lat = [(t - t0) * 1000 for rep in reports for t in rep["times"]]
                    rounds.append(
                        {
                            "received": len(lat),
                            "missing": sum(rep["missing"] for rep in reports),
                            "p50_ms": pct(lat, 50),
                            "p99_ms": pct(lat, 99),
                            "all_ms": max(lat) if lat else None,
                            "emit_ms": round((t_emitted - t0) * 1000, 3),
                        }
                    )
        finally:
            if emitter is not None:
                emitter.stdin.close()  # type: ignore[union-attr]
                emitter.wait(10)
            server.stop()
        by_all = sorted(rounds, key=lambda x: x["all_ms"] if x["all_ms"] is not None else math.inf)
        median = by_all[len(by_all) // 2]
        result = {
            "users": a.fanout_users,
            "devices_per_user": a.fanout_devices,
            "devices": devices,
            "rounds": rounds,
            "p50_ms": median["p50_ms"],
            "all_ms": median["all_ms"],
            "worst_all_ms": by_all[-1]["all_ms"],
            "missing": sum(x["missing"] for x in rounds),
            "unconnected": sum(r["unconnected"] for r in receivers),
            "connect_failures": dict(sum_counters(r["failures"] for r in receivers)),
        }
        log("   " + report.fanout_line(result))
        return result


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


def sum_counters(dicts: Any) -> Counter[str]:
    total: Counter[str] = Counter()
    for d in dicts:
        total.update(d)
    return total


def summarize_chat(rate: int, duration: float, reports: list[dict[str, Any]]) -> dict[str, Any]:
    lat = [x for r in reports for x in r["latencies_ms"]]
    ack = [x for r in reports for x in r["ack_latencies_ms"]]
    lag = [x for r in reports for x in r["lag_ms"]]
    sent = sum(r["sent"] for r in reports)
    lost = sum(r["lost"] for r in reports)
    offered = sum(r["offered"] for r in reports)
    window = max(r["send_window_s"] for r in reports)
    closes = sum_counters(r["closes"] for r in reports)
    result = {
        "rate": rate,
        "duration_s": duration,
        "offered": offered,
        "sent": sent,
        "achieved_per_s": round(sent / window, 1) if window else 0.0,
        "delivered": sum(r["delivered"] for r in reports),
        "lost": lost,
        "loss_pct": round(100 * lost / sent, 3) if sent else 0.0,
        "late": sum(r.get("late", 0) for r in reports),
        "refused": sum(r["refused"] for r in reports),
        "pushed_back": sum(r["pushed_back"] for r in reports),
        "errors": dict(sum_counters(r["errors"] for r in reports)),
        "closes": dict(closes),
        "send_failures": sum(r["send_failures"] for r in reports),
        "connect_failures": dict(sum_counters(r["connect_failures"] for r in reports)),
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
        "max_ms": max(lat) if lat else None,
        "ack_p50_ms": pct(ack, 50),
        "ack_p99_ms": pct(ack, 99),
        "gen_lag_p99_ms": pct(lag, 99),
        "drain_s": round(max(r["drain_s"] for r in reports), 3),
        "generator_cpu_s": round(sum(r["generator_cpu_s"] for r in reports), 2),
    }
    result["held"] = bool(
        sent >= 0.95 * offered
        and lost == 0
        and result["late"] == 0
        and result["refused"] == 0
        and not closes
        and result["p99_ms"] is not None
        and result["p99_ms"] <= 50
    )
    return result


def warm_up(server: Server, tokens: list[str] | None) -> None:
    """A few connections opened and closed, so lazy imports and pools are not counted as load."""
    proto = loadgen.make_proto(server.target)
    plan: list[tuple[str, str | None]] = [("warmup", t) for t in tokens] if tokens else [("warmup", None)] * 10

    async def go() -> None:
        conns, failures = await loadgen.open_many(proto, plan, 10)
        if failures:
            raise RuntimeError(f"warm-up connections failed: {dict(failures)}")
        await loadgen.close_all(conns)

    asyncio.run(go())


async def baseline_trigger(server: Server, round_no: int) -> tuple[float, float]:
    """Send the fan-out message into the baselines' shared room; returns (t_send, t_sent)."""
    proto = loadgen.make_proto(server.target)
    ws = await loadgen.open_ws(proto, "fanout")
    await asyncio.sleep(0.2)  # the tutorial joins the group before accepting, but let it settle
    key = f"fanout-{round_no}"
    t0 = time.perf_counter()
    await ws.send(proto.encode(key, "fanout"))
    t1 = time.perf_counter()
    await asyncio.sleep(0.5)
    await ws.close()
    return t0, t1


def start_emitter(user_ids: list[str], services: Services, extra: dict[str, str]) -> subprocess.Popen[str]:
    path = RUN / "fanout-users.json"
    path.write_text(json.dumps(user_ids))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.hub_emit", str(path)],
        cwd=ROOT,
        text=True,
        env=services.hub_env(extra),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        raise RuntimeError(f"hub emitter did not start: {line!r}")
    return proc


def hub_trigger(emitter: subprocess.Popen[str], round_no: int) -> tuple[float, float]:
    assert emitter.stdin is not None and emitter.stdout is not None
    emitter.stdin.write(f"{round_no}\n")
    emitter.stdin.flush()
    t0, t1 = emitter.stdout.readline().split()
    return float(t0), float(t1)


class Profiler:
    """py-spy sampling the server while a scenario's measured phase runs (`--profile`).

    Writes a flame graph (SVG) and py-spy's raw collapsed stacks (for grep) to OUT/raw/."""

    def __init__(self, enabled: bool, server: Server, out: Path) -> None:
        self.enabled, self.server, self.out = enabled, server, out
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Profiler:
        exe = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
        if self.enabled and Path(exe).exists():
            for fmt, suffix in (("flamegraph", ".svg"), ("raw", ".txt")):
                self.procs.append(
                    subprocess.Popen(
                        [
                            exe,
                            "record",
                            "-p",
                            str(self.server.pid),
                            "--subprocesses",
                            "-o",
                            str(self.out.with_suffix(suffix)),
                            "--format",
                            fmt,
                            "--nonblocking",
                            "--rate",
                            "200",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    versions = {}
    for pkg in (
        "django",
        "channels",
        "channels-redis",
        "daphne",
        "twisted",
        "websockets",
        "redis",
        "psycopg",
    ):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    cli = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    cli["out"] = (
        str(Path(cli["out"]).resolve().relative_to(ROOT))
        if Path(cli["out"]).resolve().is_relative_to(ROOT)
        else cli["out"]
    )
    return {
        "command": " ".join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": mp.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "args": cli,
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "git": git_describe(),
    }


def git_describe() -> str:
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    log(f"file descriptors: {raise_fd_limit()}")
    Bench(args).run()
    return 0
