#!/usr/bin/env bash
# Creates a virtual environment (.venv unless VENV says otherwise) with PYTHON (python3 unless set) and
# installs vidfm with every extra, torch pinned through constraints.txt.
#   bash scripts/setup.sh                                          # .venv, the default python3
#   PYTHON=/path/to/python3.13 VENV=.venv313 bash scripts/setup.sh  # another interpreter beside it
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[hf,eval,text,teachers,dev]"
