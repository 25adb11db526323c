#!/usr/bin/env bash
# `make run`: the hub with demo data on SQLite, every Procfile process in the foreground.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .run
export DJANGO_DEBUG="${DJANGO_DEBUG:-1}"
export PORT="${PORT:-8000}"
export BIND_ADDRESS="${BIND_ADDRESS:-127.0.0.1}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export PATH="$PWD/.venv/bin:$PATH"
scripts/ensure_redis.sh
python manage.py migrate --noinput -v 0
python manage.py seed_demo --json .run/demo.json --banner
exec honcho start -f Procfile
