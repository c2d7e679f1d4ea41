#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2154  # unused loop counters; variables assigned inside trap strings
# ci/stop-slurm.sh - tear down the single-node SLURM TEST cluster started by ci/start-slurm.sh
# (slurmd, slurmctld, slurmdbd, mariadbd, munged). Idempotent: stopping a stopped cluster is a no-op.
# Kills only the PIDs named in the daemons' pid files (checked against /proc/PID/comm); never by name.
#
# Knobs (environment):
#   SLURM_STOP_CANCEL=1   scancel all jobs first (so no slurmstepd is left behind)
#   STOP_MARIADB=1        also shut down mariadbd (started by start-slurm.sh)
#   STOP_MUNGE=1          also stop munged
#   WLM_TIMEOUT=60        seconds to wait for each daemon before SIGKILL
set -Eeuo pipefail
SLURM_STOP_CANCEL=${SLURM_STOP_CANCEL:-1}
STOP_MARIADB=${STOP_MARIADB:-1}
STOP_MUNGE=${STOP_MUNGE:-1}
WLM_TIMEOUT=${WLM_TIMEOUT:-60}
log() { echo "[stop-slurm $(date +%T)] $*"; }
trap 'rc=$?; echo "[stop-slurm] FATAL: command failed (rc=$rc) at line $LINENO: $BASH_COMMAND" >&2; exit $rc' ERR
[ "$(id -u)" = 0 ] || { echo "[stop-slurm] FATAL: must run as root (try: sudo $0)" >&2; exit 1; }

# shellcheck source=ci/lib.sh
. "$(dirname "$0")/lib.sh"

if [ "$SLURM_STOP_CANCEL" = 1 ] && pid_of /run/slurmctld.pid slurmctld >/dev/null; then
  jobs=$(squeue -h -o '%A' 2>/dev/null | sort -u | tr '\n' ' ' || true)
  if [ -n "${jobs// /}" ]; then
    log "cancelling jobs: $jobs"
    # shellcheck disable=SC2086
    scancel $jobs || true
    for i in $(seq 1 $(( WLM_TIMEOUT * 5 ))); do [ -z "$(squeue -h 2>/dev/null || true)" ] && break; sleep 0.2; done
  fi
fi
stop_pidfile /run/slurmd.pid slurmd
stop_pidfile /run/slurmctld.pid slurmctld
stop_pidfile /run/slurmdbd.pid slurmdbd
if [ "$STOP_MARIADB" = 1 ]; then
  if command -v mysqladmin >/dev/null && mysqladmin ping >/dev/null 2>&1; then
    mysqladmin shutdown && log "stopped mariadbd"
  else
    log "mariadbd not running"
  fi
fi
[ "$STOP_MUNGE" = 1 ] && stop_pidfile /run/munge/munged.pid munged
left=""
for c in /proc/[0-9]*/comm; do
  [ "$(cat "$c" 2>/dev/null)" = slurmstepd ] && { p=${c#/proc/}; left="$left ${p%/comm}"; }
done
[ -n "$left" ] && log "WARNING: slurmstepd still running (pids:$left) - jobs were not cancelled?"
log "done"
