#!/usr/bin/env bash
# The project's test command (fast suite; add `-m slow` for the long tests).
# On a fresh clone (no .venv, or one that cannot import key2mesh) it installs first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! { [ -x .venv/bin/python ] && .venv/bin/python -c "import key2mesh" >/dev/null 2>&1; }; then
  echo "scripts/test.sh: no working .venv with key2mesh; running scripts/setup.sh first" >&2
  bash scripts/setup.sh
fi
exec .venv/bin/python -m pytest "$@"
