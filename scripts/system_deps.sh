#!/usr/bin/env bash
# Installs Debian's packages the hub needs when they are missing: `system_deps.sh redis postgres chromium`.
set -euo pipefail
need=()
for dep in "$@"; do
  case "$dep" in
    redis) command -v redis-server >/dev/null || need+=(redis-server) ;;
    postgres) ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql) ;;
    chromium) command -v chromium >/dev/null || need+=(chromium) ;;
    coturn) command -v turnserver >/dev/null || need+=(coturn) ;;
    *) echo "unknown dependency $dep" >&2; exit 2 ;;
  esac
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
  echo "missing Debian packages: ${need[*]} (install them, or run as root)" >&2; exit 1
fi
SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
echo "installing Debian packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The Debian package starts its own cluster/server; the hub uses private ones under .run/.
for svc in postgresql redis-server; do
  if [[ " ${need[*]} " == *" ${svc} "* ]] && command -v service >/dev/null; then $SUDO service "$svc" stop >/dev/null 2>&1 || true; fi
done
