#!/usr/bin/env bash
# `make install`: .venv with requirements.lock, showing pip's progress on stderr (so `make -s token`
# prints only the token). Drops only pip's "Location 'file:///…' is ignored" notes, one per package
# for each configured local index that lacks it (this machine's pip config); keeps pip's exit status.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "install: creating $VENV with $PYTHON" >&2
  "$PYTHON" -m venv "$VENV"
fi
echo "install: $(grep -c . requirements.lock) pinned packages from requirements.lock into $VENV (a minute or two the first time)" >&2
status=0
"$VENV/bin/pip" install --disable-pip-version-check -r requirements.lock 2>&1 \
  | { grep --line-buffered -v -E "^WARNING: Location 'file://[^']*' is ignored: it is neither a file nor a directory\.$" || true; } >&2 \
  || status=$?
if [ "$status" != 0 ]; then
  echo "install: pip failed (exit $status)" >&2
  exit "$status"
fi
echo "install: done" >&2
