#!/usr/bin/env bash
# `make bench [ARGS="..."]`: the hub, the bare `websockets` relay and the Channels tutorial under the
# same load, in one run (bench/harness.py; `scripts/bench.sh --help` lists the options). Starts its own
# PostgreSQL and Redis under .run/bench/ and stops them; results go to bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system_deps.sh redis postgres
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m bench "$@"
