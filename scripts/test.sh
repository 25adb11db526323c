#!/usr/bin/env bash
# `make test`: real PostgreSQL and Redis (private ones unless DATABASE_URL/REDIS_URL are given),
# then the whole suite; whatever it started is stopped on the way out.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${DATABASE_URL:-}" ] || [ -z "${REDIS_URL:-}" ]; then
  trap 'scripts/services.sh stop' EXIT
  scripts/services.sh start
  # shellcheck disable=SC1091
  source .run/services/env
fi
export DJANGO_DEBUG=0
# DEBUG off refuses the development secrets (PROTOCOL §0): this run gets fresh ones, which the servers
# the tests start inherit.
new_secret() { head -c 32 /dev/urandom | base64 | tr -d '\n'; }
export DJANGO_SECRET_KEY="${DJANGO_SECRET_KEY:-test-$(new_secret)}"
export HUB_JWT_SECRET="${HUB_JWT_SECRET:-test-$(new_secret)}"
export HUB_EVENTS_SECRET="${HUB_EVENTS_SECRET:-whsec_$(new_secret)}"
export DATABASE_CONN_MAX_AGE="${DATABASE_CONN_MAX_AGE:-0}"
.venv/bin/python -m pytest "$@"
