#!/usr/bin/env bash
# ci/prefect-previous.sh - the Prefect runner's tests against the PREVIOUS Prefect minor (3.8.x), in a
# venv of its own (the main venv of the README's test command gets the newest Prefect, 3.9.x).
#
# As a Prefect 3.8 user would: Prefect 3.8 is installed first, then the core and prefect-poolparty
# from this tree; the install must leave Prefect's version alone (checked). Prefect 3.8's own server
# (the test harness) breaks with fastapi >= 0.155 although 3.8 allows it, so this venv, not our
# distribution, caps fastapi. Local-queue tests only: the SLURM variants run in the main suite and do
# not depend on the Prefect version. Called from .ci/run (in parallel with the main suite); by hand:
#   ci/prefect-previous.sh [VENV_DIR]        (default: .venv-prefect-previous), ~4 min + ~3 min install
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${1:-.venv-prefect-previous}
PREFECT_PREVIOUS=${PREFECT_PREVIOUS:-3.8.*}
T0=$(date +%s)
log() { echo "[prefect-previous +$(( $(date +%s) - T0 ))s] $*"; }
trap 'rc=$?; echo "[prefect-previous] FATAL: command failed (rc=$rc) at line $LINENO: $BASH_COMMAND" >&2; exit $rc' ERR

python3 -m venv "$VENV"
"$VENV"/bin/pip install -q "prefect==$PREFECT_PREVIOUS" "fastapi<0.155" "pytest>=8" "pytest-timeout>=2.3"
before=$("$VENV"/bin/python -c 'import prefect; print(prefect.__version__)')
log "Prefect $before installed; now the core and prefect-poolparty from this tree"
"$VENV"/bin/pip install -q -e . -e distributions/prefect-poolparty
after=$("$VENV"/bin/python -c 'import prefect; print(prefect.__version__)')
[ "$before" = "$after" ] || { echo "[prefect-previous] FAIL: installing prefect-poolparty changed Prefect $before -> $after" >&2; exit 1; }
log "Prefect still $after; running tests/test_prefect_runner.py (local queue)"
env -u POOLPARTY_REQUIRE_REAL_WLM "$VENV"/bin/python -m pytest -p no:cacheprovider -q tests/test_prefect_runner.py -k "not slurm"
log "passed with Prefect $after"
