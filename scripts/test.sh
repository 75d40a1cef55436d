#!/usr/bin/env bash
# The project's test command (fast suite; add `-m slow` for the long tests).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest "$@"
