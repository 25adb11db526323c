#!/usr/bin/env bash
# Private PostgreSQL and Redis servers for tests, on free ports with data under .run/services/.
#   scripts/services.sh start   -> starts both, writes .run/services/env (DATABASE_URL, REDIS_URL)
#   scripts/services.sh stop    -> stops both and removes their data
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${SERVICES_DIR:-$PWD/.run/services}"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

start() {
  scripts/system_deps.sh redis postgres
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  stop >/dev/null 2>&1 || true
  mkdir -p "$DIR/pg" "$DIR/redis"
  local pg_port redis_port
  pg_port=$(free_port); redis_port=$(free_port)
  [ "$(id -u)" = 0 ] && chown -R postgres "$DIR/pg"
  as_pg "$PG_BIN/initdb" -D "$DIR/pg/data" -U hub --auth=trust -E UTF8 --locale=C.UTF-8 >"$DIR/pg/initdb.log"
  as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/server.log" -w -t 60 start -o \
    "-p $pg_port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off \
     -c synchronous_commit=off -c full_page_writes=off -c max_connections=400 -c shared_buffers=256MB" >/dev/null
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$DIR/redis" --save '' --appendonly no \
    --daemonize yes --pidfile "$DIR/redis/redis.pid" --logfile "$DIR/redis/redis.log" --maxclients 20000
  for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  cat >"$DIR/env" <<ENV
export DATABASE_URL=postgres://hub@127.0.0.1:$pg_port/hub
export REDIS_URL=redis://127.0.0.1:$redis_port/0
ENV
  as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$pg_port" -U hub hub
  echo "PostgreSQL on 127.0.0.1:$pg_port, Redis on 127.0.0.1:$redis_port (env in $DIR/env)"
}

stop() {
  if [ -f "$DIR/pg/data/postmaster.pid" ]; then as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -m immediate -w stop >/dev/null || true; fi
  if [ -f "$DIR/redis/redis.pid" ]; then kill "$(cat "$DIR/redis/redis.pid")" 2>/dev/null || true; fi
  rm -rf "$DIR"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
