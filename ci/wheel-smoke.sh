#!/usr/bin/env bash
# ci/wheel-smoke.sh - build the three distributions as a user would get them and try each way in.
#
#   1. build: the core's sdist and wheel (`python -m build .`: the wheel is built from the sdist) and the
#      wheels of the two plugins (`python -m build --wheel distributions/...`: their code lives outside
#      their metadata directory, see distributions/); `twine check` on all four
#   2. install the built wheels (never the tree) in a fresh venv, with snakemake (the plugin depends only
#      on snakemake's plugin interface) and check that poolparty is imported from that venv
#   3. smoke, from a scratch directory outside the tree: a Pool.map on the local queue, `snakemake
#      --executor poolparty` on a 3-rule workflow, a Prefect flow with .map
#
# Called from .ci/run (in parallel with the main suite). By hand: ci/wheel-smoke.sh [WORK_DIR]
# (default: a fresh temp dir; the built files are left in WORK_DIR/dist).
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$(pwd)
WORK=${1:-$(mktemp -d -t poolparty-wheels.XXXXXX)}
mkdir -p "$WORK"
T0=$(date +%s)
log() { echo "[wheel-smoke +$(( $(date +%s) - T0 ))s] $*"; }
trap 'rc=$?; echo "[wheel-smoke] FATAL: command failed (rc=$rc) at line $LINENO: $BASH_COMMAND" >&2; exit $rc' ERR

log "build tools in $WORK/build-venv"
python3 -m venv "$WORK/build-venv"
"$WORK/build-venv/bin/pip" install -q build twine
rm -rf "$WORK/dist"
"$WORK/build-venv/bin/python" -m build -o "$WORK/dist" "$REPO" > "$WORK/build.log"
for dist in prefect-poolparty snakemake-executor-plugin-poolparty; do
  "$WORK/build-venv/bin/python" -m build --wheel -o "$WORK/dist" "$REPO/distributions/$dist" >> "$WORK/build.log"
done
ls -l "$WORK/dist"
n_wheels=$(find "$WORK/dist" -name '*.whl' | wc -l); n_sdists=$(find "$WORK/dist" -name '*.tar.gz' | wc -l)
[ "$n_wheels" = 3 ] && [ "$n_sdists" = 1 ] || { echo "[wheel-smoke] FAIL: expected 3 wheels and 1 sdist" >&2; exit 1; }
"$WORK/build-venv/bin/twine" check --strict "$WORK"/dist/*

log "installing the built wheels in $WORK/smoke-venv"
python3 -m venv "$WORK/smoke-venv"
"$WORK/smoke-venv/bin/pip" install -q "$WORK"/dist/*.whl "snakemake>=9,<10"
PY="$WORK/smoke-venv/bin/python"
SCRATCH="$WORK/scratch"; rm -rf "$SCRATCH"; mkdir -p "$SCRATCH"; cd "$SCRATCH"
where=$("$PY" -c 'import poolparty, prefect_poolparty, snakemake_executor_plugin_poolparty as s; print(poolparty.__file__, prefect_poolparty.__file__, s.__file__)')
case "$where" in *"$REPO/"*) echo "[wheel-smoke] FAIL: imported from the tree, not the wheels: $where" >&2; exit 1 ;; esac
"$WORK/smoke-venv/bin/poolparty" --version
"$WORK/smoke-venv/bin/pip" list 2>/dev/null | grep -iE '^(poolparty-hpc|prefect-poolparty|snakemake-executor-plugin-poolparty|prefect|snakemake) '

log "smoke 1: Pool.map on the local queue"
"$PY" "$REPO/ci/wheel-smoke/pool_map.py"
log "smoke 2: snakemake --executor poolparty, 3 rules"
mkdir snakemake && cp "$REPO/ci/wheel-smoke/Snakefile" snakemake/
(cd snakemake && "$WORK/smoke-venv/bin/snakemake" --executor poolparty --poolparty-queue local -j 3 --quiet progress \
  > "$WORK/snakemake.log" 2>&1) || { tail -40 "$WORK/snakemake.log" >&2; exit 1; }
[ "$(cat snakemake/c.txt)" = $'a\nb\nc' ] || { echo "[wheel-smoke] FAIL: c.txt is $(cat snakemake/c.txt)" >&2; exit 1; }
log "snakemake: ok"
log "smoke 3: a Prefect flow with .map"
PREFECT_HOME="$WORK/prefect-home" PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=180 "$PY" "$REPO/ci/wheel-smoke/prefect_map.py" \
  > "$WORK/prefect.log" 2>&1 || { tail -40 "$WORK/prefect.log" >&2; exit 1; }
tail -1 "$WORK/prefect.log"
log "all three wheels work: ok"
