#!/usr/bin/env bash
# `make bench [ARGS="..."]`: the hub, the bare `websockets` relay and the Channels tutorial under the
# same load, in one run (bench/harness.py; `scripts/bench.sh --help` lists the options). Starts its own
# PostgreSQL and Redis under .run/bench/ and stops them; results go to bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system_deps.sh redis postgres
export PATH="$PWD/.venv/bin:$PATH"
# The hub runs with DEBUG off here, which refuses the development secrets (PROTOCOL §0): fresh ones per run.
new_secret() { head -c 32 /dev/urandom | base64 | tr -d '\n'; }
export DJANGO_SECRET_KEY="${DJANGO_SECRET_KEY:-bench-$(new_secret)}"
export HUB_JWT_SECRET="${HUB_JWT_SECRET:-bench-$(new_secret)}"
export HUB_EVENTS_SECRET="${HUB_EVENTS_SECRET:-whsec_$(new_secret)}"
exec .venv/bin/python -m bench "$@"
