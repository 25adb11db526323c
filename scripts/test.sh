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
export DATABASE_CONN_MAX_AGE="${DATABASE_CONN_MAX_AGE:-0}"
.venv/bin/python -m pytest "$@"
