"""The Procfile's `web` process: daphne serving config.asgi:application, WEB_CONCURRENCY times over one socket.

One daphne process runs one event loop on one core. To use the machine's cores, this binds
WEB_CONCURRENCY listening sockets to PORT with SO_REUSEPORT (BIND_ADDRESS, HUB_LISTEN_BACKLOG) and
starts one daphne on each (`daphne --fd`); the kernel spreads new connections over them. Everything
that crosses connections already goes through PostgreSQL and Redis, so the processes need not know
of each other (ADR 0037). With WEB_CONCURRENCY=1 daphne replaces this process (no supervisor).

Metrics (ADR 0051): the daphnes share PROMETHEUS_MULTIPROC_DIR (a fresh directory this supervisor
makes and removes, or the operator's, emptied first), so /metrics answers for the whole `web`
whichever process a scrape reaches.

The supervisor forwards SIGTERM/SIGINT to every daphne and exits when they have; if one daphne dies,
it stops the others and exits with its status, so the process manager restarts the whole `web`.

    python -m config.web [daphne options …]     (options are passed to every daphne)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APPLICATION = "config.asgi:application"


def concurrency() -> int:
    """WEB_CONCURRENCY, else one process per core (at least one)."""
    value = os.environ.get("WEB_CONCURRENCY", "").strip()
    if value:
        count = int(value)
        if count < 1:
            raise SystemExit(f"WEB_CONCURRENCY must be at least 1, not {value!r}")
        return count
    return max(1, len(os.sched_getaffinity(0)))


def listen(*, reuse_port: bool) -> socket.socket:
    """One listening socket on PORT; with `reuse_port`, one of several on the same port (SO_REUSEPORT)."""
    host = os.environ.get("BIND_ADDRESS", "0.0.0.0")
    port = int(os.environ.get("PORT", "8000"))
    if ":" in host:  # daphne adopts a socket as IPv4 (its `--fd`); put an IPv6 front proxy before it
        raise SystemExit(f"BIND_ADDRESS must be an IPv4 address, not {host!r}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(int(os.environ.get("HUB_LISTEN_BACKLOG", "1024")))
    sock.set_inheritable(True)
    return sock


def daphne_argv(fd: int, options: list[str]) -> list[str]:
    daphne = os.path.join(os.path.dirname(sys.executable), "daphne")
    return [daphne, "--fd", str(fd), *options, APPLICATION]


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_dir() -> tuple[Path, bool]:
    """The metrics directory of this `web` run, empty; and whether it is ours to remove afterwards."""
    given = os.environ.get(MULTIPROC_ENV, "").strip()
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # values of a previous run must not add to this one's
            stale.unlink()
        return path, False
    return Path(tempfile.mkdtemp(prefix="hub-metrics-")), True


def supervise(sockets: list[socket.socket], options: list[str]) -> int:
    children = [subprocess.Popen(daphne_argv(sock.fileno(), options), pass_fds=[sock.fileno()]) for sock in sockets]
    for sock in sockets:
        sock.close()  # each child holds its own
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    while any(child.poll() is None for child in children):
        for child in children:
            code = child.poll()
            if code is not None and not stopping:
                print(f"web: daphne {child.pid} exited with {code}; stopping the others", file=sys.stderr)
                status = code or 1
                stop(signal.SIGTERM, None)
        time.sleep(0.2)
    return status


def main(options: list[str]) -> int:
    count = concurrency()
    if count == 1:
        if os.environ.get(MULTIPROC_ENV, "").strip():
            metrics_dir()  # the operator's directory: emptied of a previous run's values
        sock = listen(reuse_port=False)
        print(f"web: one daphne process on {sock.getsockname()}", file=sys.stderr, flush=True)
        argv = daphne_argv(sock.fileno(), options)
        os.execv(argv[0], argv)
    # One socket per process on the same port: the kernel spreads new connections evenly over them
    # (one shared socket would let whichever process wakes first accept a whole burst).
    sockets = [listen(reuse_port=True)]
    port = sockets[0].getsockname()[1]
    os.environ["PORT"] = str(port)  # PORT=0 (any free port): the others join the one the first got
    sockets += [listen(reuse_port=True) for _ in range(count - 1)]
    directory, ours = metrics_dir()
    os.environ[MULTIPROC_ENV] = str(directory)  # read by prometheus_client when each daphne imports it
    print(f"web: {count} daphne processes on {sockets[0].getsockname()}", file=sys.stderr, flush=True)
    try:
        return supervise(sockets, options)
    finally:
        if ours:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
