#!/usr/bin/env bash
# Creates .venv and installs vidfm with every extra, torch pinned through constraints.txt.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[hf,eval,text,teachers,dev]"
