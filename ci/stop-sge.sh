#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2154  # unused loop counters; variables assigned inside trap strings
# ci/stop-sge.sh - tear down the single-node SGE TEST cluster started by ci/start-sge.sh (sge_execd, sge_qmaster).
# Idempotent: stopping a stopped cluster is a no-op. Kills only the PIDs named in the daemons' pid files
# (checked against /proc/PID/comm); never by name.
#
# Knobs (environment):
#   SGE_STOP_DELETE=1   qdel every job of every user first (qdel -f if they do not go away)
#   WLM_TIMEOUT=60      seconds to wait for jobs / each daemon before escalating
set -Eeuo pipefail
SGE_STOP_DELETE=${SGE_STOP_DELETE:-1}
WLM_TIMEOUT=${WLM_TIMEOUT:-60}
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
SPOOL=/var/spool/gridengine
log() { echo "[stop-sge $(date +%T)] $*"; }
trap 'rc=$?; echo "[stop-sge] FATAL: command failed (rc=$rc) at line $LINENO: $BASH_COMMAND" >&2; exit $rc' ERR
[ "$(id -u)" = 0 ] || { echo "[stop-sge] FATAL: must run as root (try: sudo $0)" >&2; exit 1; }

# shellcheck source=ci/lib.sh
. "$(dirname "$0")/lib.sh"
jobs_left() { [ -n "$(qstat -u '*' 2>/dev/null || true)" ]; }

if [ "$SGE_STOP_DELETE" = 1 ] && pid_of $SPOOL/qmaster/qmaster.pid sge_qmaster >/dev/null && jobs_left; then
  log "deleting all jobs"; qdel -u '*' >/dev/null 2>&1 || true
  for i in $(seq 1 $(( WLM_TIMEOUT * 5 ))); do jobs_left || break; sleep 0.2; done
  if jobs_left; then log "forcing deletion (qdel -f)"; qdel -f -u '*' >/dev/null 2>&1 || true; fi
fi
found=0
for pf in $SPOOL/execd/*/execd.pid; do
  if pid_of "$pf" sge_execd >/dev/null; then stop_pidfile "$pf" sge_execd; found=1; fi
done
[ "$found" = 1 ] || log "sge_execd not running"
if pid_of $SPOOL/qmaster/qmaster.pid sge_qmaster >/dev/null; then
  stop_pidfile $SPOOL/qmaster/qmaster.pid sge_qmaster
else
  log "sge_qmaster not running"
fi
log "done"
