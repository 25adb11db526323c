#!/usr/bin/env bash
# Makes sure a Redis answers at $REDIS_URL; starts a local one under .run/redis when none does.
set -euo pipefail
cd "$(dirname "$0")/.."
URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
if .venv/bin/python -c "import redis,sys; redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()" "$URL" 2>/dev/null; then
  exit 0
fi
read -r HOST PORT < <(.venv/bin/python -c "from urllib.parse import urlsplit; import sys; u=urlsplit(sys.argv[1]); print(u.hostname or '127.0.0.1', u.port or 6379)" "$URL")
if [ "$HOST" != 127.0.0.1 ] && [ "$HOST" != localhost ]; then
  echo "no Redis answers at $URL" >&2; exit 1
fi
scripts/system_deps.sh redis
mkdir -p .run/redis
redis-server --port "$PORT" --bind 127.0.0.1 --dir "$PWD/.run/redis" --daemonize yes \
  --pidfile "$PWD/.run/redis/redis.pid" --logfile "$PWD/.run/redis/redis.log" --maxclients 20000
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && { echo "started Redis on 127.0.0.1:$PORT (.run/redis)"; exit 0; }; sleep 0.1; done
echo "Redis did not start; see .run/redis/redis.log" >&2; exit 1
