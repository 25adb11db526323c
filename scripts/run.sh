#!/usr/bin/env bash
# `make run`: the hub with demo data on SQLite, every Procfile process in the foreground until Ctrl-C
# (a Redis this script started is stopped too).
# `scripts/run.sh token USER [TTL]` (`make token`): a JWT for USER with the same settings and database.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .run
export DJANGO_DEBUG="${DJANGO_DEBUG:-1}"
export PORT="${PORT:-8000}"
export BIND_ADDRESS="${BIND_ADDRESS:-127.0.0.1}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export PATH="$PWD/.venv/bin:$PATH"

if [ "${1:-}" = token ]; then
  [ -n "${2:-}" ] || { echo "usage: scripts/run.sh token USER_ID_OR_EMAIL [TTL_SECONDS]" >&2; exit 2; }
  python manage.py migrate --noinput -v 0
  python manage.py seed_demo >/dev/null
  exec python manage.py mint_token "$2" --ttl "${3:-3600}"
fi

redis_pid_before="$(cat .run/redis/redis.pid 2>/dev/null || true)"
scripts/ensure_redis.sh
redis_pid="$(cat .run/redis/redis.pid 2>/dev/null || true)"
if [ -n "$redis_pid" ] && [ "$redis_pid" != "$redis_pid_before" ]; then
  # ensure_redis.sh started this one for us: it goes when we do.
  trap 'kill "$redis_pid" 2>/dev/null && echo "stopped Redis (.run/redis)"' EXIT
fi
python manage.py migrate --noinput -v 0
python manage.py seed_demo --json .run/demo.json --banner
honcho start -f Procfile
