"""The servers under test and what they stand on: started, watched through /proc, and stopped by the harness.

- `relay`: bench/relay.py (no auth, no database).
- `tutorial` / `tutorial-pubsub`: the Channels tutorial chat on daphne (bench/baselines/tutorial/),
  with the tutorial's `RedisChannelLayer`, or `RedisPubSubChannelLayer` to reproduce the founders' row.
- `hub`: the Procfile's `web` process, against a private PostgreSQL and Redis (scripts/services.sh
  with its data under .run/bench/services/), migrated and seeded with `seed_demo --pairs N --json`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".run" / "bench"
TUTORIAL_DIR = ROOT / "bench" / "baselines" / "tutorial"
VENV_BIN = ROOT / ".venv" / "bin"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

TARGETS = ("relay", "tutorial", "tutorial-pubsub", "hub")
LABELS = {
    "relay": "bare `websockets` relay",
    "tutorial": "Channels tutorial (daphne + RedisChannelLayer)",
    "tutorial-pubsub": "Channels tutorial (daphne + RedisPubSubChannelLayer)",
    "hub": "Loconomy Hub (Procfile `web`, daphne, PostgreSQL)",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


def procfile_command(process: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            return command.strip()
    raise LookupError(process)


class Services:
    """Private PostgreSQL and Redis for one benchmark run (scripts/services.sh in .run/bench/services)."""

    def __init__(self) -> None:
        self.dir = RUN / "services"
        self.env: dict[str, str] = {}

    def start(self) -> None:
        env = {**base_env(), "SERVICES_DIR": str(self.dir)}
        subprocess.run(
            [str(ROOT / "scripts" / "services.sh"), "start"],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        for line in (self.dir / "env").read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            self.env[key] = value

    def stop(self) -> None:
        env = {**base_env(), "SERVICES_DIR": str(self.dir)}
        subprocess.run(
            [str(ROOT / "scripts" / "services.sh"), "stop"],
            cwd=ROOT,
            env=env,
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @property
    def redis_url(self) -> str:
        return self.env["REDIS_URL"]

    def redis_url_db(self, db: int) -> str:
        return self.redis_url.rsplit("/", 1)[0] + f"/{db}"

    def flush_redis(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        client.flushall()
        client.close()

    def redis_used_kib(self) -> float:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        used = int(client.info("memory")["used_memory"])  # type: ignore[index]
        client.close()
        return used / 1024

    def hub_env(self, extra: dict[str, str]) -> dict[str, str]:
        return {**base_env(), **self.env, "DJANGO_DEBUG": "0", **extra}

    def prepare_hub(self, pairs: int, extra: dict[str, str]) -> dict[str, Any]:
        """Migrate and seed; returns seed_demo's JSON (pairs with conversation ids and tokens)."""
        env = self.hub_env(extra)
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        path = RUN / "demo.json"
        subprocess.run(
            [*manage, "seed_demo", "--pairs", str(pairs), "--json", str(path)],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return dict(json.loads(path.read_text()))


class Server:
    """One server process under test, in its own session so it and its children stop together."""

    def __init__(
        self,
        kind: str,
        argv: list[str],
        cwd: Path,
        env: dict[str, str],
        port: int,
        health_path: str | None = None,
    ) -> None:
        self.kind, self.argv, self.cwd, self.env, self.port = kind, argv, cwd, env, port
        self.health_path = health_path
        RUN.mkdir(parents=True, exist_ok=True)
        self.log_path = RUN / f"{kind}-{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> dict[str, Any]:
        """What a worker needs to talk to it."""
        return {"kind": "tutorial" if self.kind.startswith("tutorial") else self.kind, "port": self.port}

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60) -> Server:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited at start:\n{self.log_tail()}")
            if self._answers():
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"{self.kind} not ready in {timeout} s:\n{self.log_tail()}")

    def _answers(self) -> bool:
        try:
            if self.health_path is None:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", self.health_path)
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def pids(self) -> list[int]:
        """The server's processes: its process group (the Procfile `web` may run several daphnes)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            if int(fields[2]) == self.pid:  # field 5 of stat: the process group
                found.append(int(entry.name))
        return found

    def _processes(self) -> list[int]:
        """The processes that serve: the supervisor of several daphnes only waits, so it is left out."""
        pids = self.pids()
        return [p for p in pids if p != self.pid] or pids

    def rss_kib(self) -> int:
        """Resident set size of the serving processes, summed, from /proc/<pid>/statm."""
        return sum(int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB for pid in self._processes())

    def cpu_s(self) -> float:
        """User + system CPU seconds the serving processes have used, from /proc/<pid>/stat."""
        total = 0
        for pid in self.pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / CLK_TCK

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def make_server(kind: str, services: Services | None, hub_extra_env: dict[str, str]) -> Server:
    port = free_port()
    if kind == "relay":
        argv = [sys.executable, "-m", "bench.relay", "--port", str(port)]
        return Server(kind, argv, ROOT, base_env(), port)
    if kind in ("tutorial", "tutorial-pubsub"):
        assert services is not None
        env = {
            **base_env(),
            "PYTHONPATH": str(TUTORIAL_DIR),
            "DJANGO_SETTINGS_MODULE": "mysite.settings",
            "TUTORIAL_REDIS_URL": services.redis_url_db(1),
            "TUTORIAL_SQLITE": str(RUN / "tutorial.sqlite3"),
            "TUTORIAL_LAYER": "pubsub" if kind == "tutorial-pubsub" else "core",
        }
        argv = [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "mysite.asgi:application"]
        return Server(kind, argv, TUTORIAL_DIR, env, port)
    if kind == "hub":
        assert services is not None
        env = {**services.hub_env(hub_extra_env), "PORT": str(port), "BIND_ADDRESS": "127.0.0.1"}
        argv = ["bash", "-c", f"exec {procfile_command('web')}"]
        return Server(kind, argv, ROOT, env, port, health_path="/healthz")
    raise ValueError(f"unknown target {kind!r}")
