#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2154  # unused loop counters; variables assigned inside trap strings
# ci/start-sge.sh - bring up a single-node (Son of) Sun Grid Engine 8.1.9 TEST cluster on Debian 12, as root,
# without systemd. For CI and development machines only: one host is qmaster, exec host and submit host;
# the queue advertises more slots than the host has cores. Not a production configuration.
# Can run next to ci/start-slurm.sh on the same machine (SGE uses ports 6444/6445, SLURM 6817-6819 + 3306).
#
# Idempotent: installs missing packages (debconf preseeded), initialises the cell if needed, fixes
# host-name resolution (host_aliases), starts sge_qmaster / sge_execd only if not running, (re)applies
# the cluster configuration (global conf, scheduler conf, exec host, @allhosts, PE smp, queue all.q),
# waits until all.q@<host> reports load with no error/alarm/disabled state, then runs `qsub -sync y`.
#
# Knobs (environment):
#   SGE_SLOTS=16      slots of all.q (overcommit allowed)
#   SGE_TUNE=1        1 = fast turnaround (schedule_interval 1 s, flush on submit/finish, fast unknown-host
#                     detection), 0 = Debian/SGE defaults (schedule_interval 15 s) for baselines
#   SGE_SMOKE=1       run a trivial `qsub -sync y` job at the end
#   WLM_TIMEOUT=120   seconds to wait for each readiness condition
#   SGE_JOB_TMPDIR    queue tmpdir for jobs (default: the system temporary directory)
#
# Commands: the Debian wrappers /usr/bin/q{sub,stat,del,acct,conf,...} work from PATH without SGE_ROOT/SGE_CELL
# in the environment (they default to /var/lib/gridengine and "default").
set -Eeuo pipefail

SGE_SLOTS=${SGE_SLOTS:-16}
SGE_TUNE=${SGE_TUNE:-1}
SGE_SMOKE=${SGE_SMOKE:-1}
WLM_TIMEOUT=${WLM_TIMEOUT:-120}
SGE_JOB_TMPDIR=${SGE_JOB_TMPDIR:-$(dirname "$(mktemp -u)")}
APT_LOG=/var/log/start-sge-apt.log
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
COMMON=$SGE_ROOT/$SGE_CELL/common
SPOOL=/var/spool/gridengine
QM_PIDFILE=$SPOOL/qmaster/qmaster.pid
WORK=$(mktemp -d -t start-sge.XXXXXX)

DAEMON_LOG=/var/log/start-sge-daemons.log

T0=$(date +%s%N)
log() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '[start-sge %4d.%01ds] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*"; }
dump_logs() {
  local f
  for f in $SPOOL/qmaster/messages $SPOOL/execd/*/messages "$DAEMON_LOG"; do
    [ -s "$f" ] && { echo "---- tail -n 20 $f" >&2; tail -n 20 "$f" >&2; }
  done
  return 0
}
die() { trap - ERR; echo "[start-sge] FATAL: $*" >&2; dump_logs; exit 1; }
trap 'rc=$?; trap - ERR; echo "[start-sge] FATAL: command failed (rc=$rc) at line $LINENO: $BASH_COMMAND" >&2; dump_logs; exit $rc' ERR
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
# shellcheck source=ci/lib.sh
. "$(dirname "$0")/lib.sh"
execd_alive() { local pf; for pf in $SPOOL/execd/*/execd.pid; do pid_alive "$pf" sge_execd && return 0; done; return 1; }
# qc <qconf args...> : run qconf quietly, show its output only if it fails
qc() { local out; out=$(qconf "$@" 2>&1) || { echo "qconf $*: $out" >&2; return 1; }; }

[ "$(id -u)" = 0 ] || die "must run as root (try: sudo $0)"
for v in SGE_SLOTS WLM_TIMEOUT; do [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"; done
NODE=$(hostname)

# ---------------------------------------------------------------- 1. packages (debconf preseeded)
PKGS=(gridengine-master gridengine-exec gridengine-client gridengine-common)
mapfile -t missing < <(missing_packages "${PKGS[@]}")
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  for p in "${PKGS[@]}"; do
    printf '%s shared/gridengineconfig boolean true\n%s shared/gridenginecell string %s\n%s shared/gridenginemaster string %s\n' \
      "$p" "$p" "$SGE_CELL" "$p" "$NODE"
  done | debconf-set-selections
  apt_install "$APT_LOG" "${missing[@]}"
else
  log "packages already installed"
fi

# ---------------------------------------------------------------- 2. cell / spool / names
install -d -o sgeadmin -g sgeadmin -m 0755 $SGE_ROOT/$SGE_CELL $COMMON $SPOOL/qmaster $SPOOL/qmaster/job_scripts $SPOOL/spooldb $SPOOL/execd
[ -s $COMMON/bootstrap ] || install -m 0644 -o sgeadmin -g sgeadmin /usr/share/gridengine/default-bootstrap $COMMON/bootstrap
if [ ! -e $SPOOL/spooldb/sge ]; then   # what gridengine-master's postinst does on a fresh install
  su -s /bin/sh -c "/usr/share/gridengine/scripts/init_cluster $SGE_ROOT $SGE_CELL $SPOOL/spooldb sgeadmin" sgeadmin >/dev/null
  log "initialised cell $SGE_CELL"
fi
if [ "$(cat $COMMON/act_qmaster 2>/dev/null)" != "$NODE" ]; then   # empty if installed without preseed
  echo "$NODE" > $COMMON/act_qmaster; chown sgeadmin:sgeadmin $COMMON/act_qmaster
  log "act_qmaster := $NODE"
fi
# SGE compares the name a client claims with the reverse lookup of its IP. If $NODE resolves to an
# address whose canonical name is different (e.g. "127.0.0.1 localhost ... $NODE" in /etc/hosts),
# every client is rejected ("access denied ... client IP resolved to host name localhost").
IP=$(getent ahostsv4 "$NODE" | awk 'NR==1{print $1}')
[ -n "$IP" ] || die "hostname $NODE does not resolve"
RNAME=$(/usr/lib/gridengine/gethostbyaddr "$IP" 2>/dev/null | sed -n 's/^Hostname: *//p')
ALIASES=""
[ -n "$RNAME" ] && [ "$RNAME" != "$NODE" ] && ALIASES="$NODE $RNAME"
ALIAS_CHANGED=0
if [ -n "$ALIASES" ]; then
  if [ "$(cat $COMMON/host_aliases 2>/dev/null)" != "$ALIASES" ]; then
    echo "$ALIASES" > $COMMON/host_aliases; chown sgeadmin:sgeadmin $COMMON/host_aliases; ALIAS_CHANGED=1
    log "host_aliases: '$ALIASES' ($NODE -> $IP -> $RNAME)"
  fi
elif [ -e $COMMON/host_aliases ]; then
  rm -f $COMMON/host_aliases; ALIAS_CHANGED=1
fi

# ---------------------------------------------------------------- 3. qmaster
if [ "$ALIAS_CHANGED" = 1 ] && pid_alive $QM_PIDFILE sge_qmaster; then
  log "host_aliases changed: restarting qmaster"; stop_pidfile $QM_PIDFILE sge_qmaster
fi
if ! pid_alive $QM_PIDFILE sge_qmaster; then
  install -d -o sgeadmin -g sgeadmin /run/gridengine
  start_daemon "$DAEMON_LOG" /usr/sbin/sge_qmaster
  log "started sge_qmaster"
fi
wait_for "qmaster answering (qconf -sh)" qconf -sh

# ---------------------------------------------------------------- 4. configuration (always re-applied)
mkdir -p "$WORK/g"
qconf -sconf > "$WORK/g/global"
sed -i -e 's/^min_uid .*/min_uid                      0/' -e 's/^min_gid .*/min_gid                      0/' "$WORK/g/global"
if [ "$SGE_TUNE" = 1 ]; then
  sed -i -e 's/^load_report_time .*/load_report_time             00:00:10/' \
         -e 's/^max_unheard .*/max_unheard                  00:00:30/' \
         -e 's/^reschedule_unknown .*/reschedule_unknown           00:00:30/' "$WORK/g/global"
else
  sed -i -e 's/^load_report_time .*/load_report_time             00:00:40/' \
         -e 's/^max_unheard .*/max_unheard                  00:05:00/' \
         -e 's/^reschedule_unknown .*/reschedule_unknown           00:00:00/' "$WORK/g/global"
fi
# accounting file flush: default every 15 s (qacct lags that long); tuned: every second
[ "$SGE_TUNE" = 1 ] && FLUSH=00:00:01 || FLUSH=00:00:15
awk -v flush="$FLUSH" '
  skip { skip = /\\$/; next }                       # drop continuation lines of reporting_params
  /^reporting_params/ { skip = /\\$/
    printf "reporting_params             accounting=true reporting=false flush_time=%s joblog=false sharelog=00:00:00\n", flush
    next }
  { print }' "$WORK/g/global" > "$WORK/g/global.new"
mv "$WORK/g/global.new" "$WORK/g/global"
(cd "$WORK/g" && qc -Mconf global)     # the file name must be the config name ("global")

qconf -ssconf > "$WORK/sched"
if [ "$SGE_TUNE" = 1 ]; then
  sed -i -e 's/^schedule_interval .*/schedule_interval                 0:0:1/' \
         -e 's/^flush_submit_sec .*/flush_submit_sec                  1/' \
         -e 's/^flush_finish_sec .*/flush_finish_sec                  1/' \
         -e 's/^job_load_adjustments .*/job_load_adjustments              NONE/' \
         -e 's/^load_adjustment_decay_time .*/load_adjustment_decay_time        0:0:0/' "$WORK/sched"
else
  sed -i -e 's/^schedule_interval .*/schedule_interval                 0:0:15/' \
         -e 's/^flush_submit_sec .*/flush_submit_sec                  0/' \
         -e 's/^flush_finish_sec .*/flush_finish_sec                  0/' \
         -e 's/^job_load_adjustments .*/job_load_adjustments              np_load_avg=0.50/' \
         -e 's/^load_adjustment_decay_time .*/load_adjustment_decay_time        0:7:30/' "$WORK/sched"
fi
sed -i -e 's/^schedd_job_info .*/schedd_job_info                   true/' "$WORK/sched"
qc -Msconf "$WORK/sched"

qconf -sh 2>/dev/null | grep -x "$NODE" >/dev/null || qc -ah "$NODE"
qconf -ss 2>/dev/null | grep -x "$NODE" >/dev/null || qc -as "$NODE"
if ! qconf -se "$NODE" >/dev/null 2>&1; then
  printf 'hostname %s\nload_scaling NONE\ncomplex_values NONE\nuser_lists NONE\nxuser_lists NONE\nprojects NONE\nxprojects NONE\nusage_scaling NONE\nreport_variables NONE\n' "$NODE" > "$WORK/exechost"
  qc -Ae "$WORK/exechost"
fi
if ! qconf -shgrp @allhosts >/dev/null 2>&1; then
  printf 'group_name @allhosts\nhostlist %s\n' "$NODE" > "$WORK/hgrp"; qc -Ahgrp "$WORK/hgrp"
fi
if ! qconf -sp smp >/dev/null 2>&1; then
  printf 'pe_name smp\nslots 99999\nuser_lists NONE\nxuser_lists NONE\nstart_proc_args NONE\nstop_proc_args NONE\nallocation_rule $pe_slots\ncontrol_slaves FALSE\njob_is_first_task TRUE\nurgency_slots min\naccounting_summary FALSE\nqsort_args NONE\n' > "$WORK/pe"
  qc -Ap "$WORK/pe"
fi
cat > "$WORK/queue" <<EOF
qname                 all.q
hostlist              @allhosts
seq_no                0
load_thresholds       NONE
suspend_thresholds    NONE
nsuspend              1
suspend_interval      00:05:00
priority              0
min_cpu_interval      00:05:00
processors            UNDEFINED
qtype                 BATCH INTERACTIVE
ckpt_list             NONE
pe_list               smp
rerun                 FALSE
slots                 $SGE_SLOTS
tmpdir                $SGE_JOB_TMPDIR
shell                 /bin/sh
prolog                NONE
epilog                NONE
shell_start_mode      posix_compliant
starter_method        NONE
suspend_method        NONE
resume_method         NONE
terminate_method      NONE
notify                00:00:60
owner_list            NONE
user_lists            NONE
xuser_lists           NONE
subordinate_list      NONE
complex_values        NONE
projects              NONE
xprojects             NONE
calendar              NONE
initial_state         default
s_rt                  INFINITY
h_rt                  INFINITY
s_cpu                 INFINITY
h_cpu                 INFINITY
s_fsize               INFINITY
h_fsize               INFINITY
s_data                INFINITY
h_data                INFINITY
s_stack               INFINITY
h_stack               INFINITY
s_core                INFINITY
h_core                INFINITY
s_rss                 INFINITY
h_rss                 INFINITY
s_vmem                INFINITY
h_vmem                INFINITY
EOF
if qconf -sq all.q >/dev/null 2>&1; then qc -Mq "$WORK/queue"; else qc -Aq "$WORK/queue"; fi
log "configuration applied (slots=$SGE_SLOTS tune=$SGE_TUNE)"

# ---------------------------------------------------------------- 5. execd
if ! execd_alive; then
  start_daemon "$DAEMON_LOG" /usr/sbin/sge_execd
  log "started sge_execd"
fi
deadline=$(( $(date +%s) + WLM_TIMEOUT ))
while :; do
  line=$(qstat -f -q all.q 2>/dev/null | awk -v q="all.q@$NODE" '$1==q' || true)
  load=$(echo "$line" | awk '{print $4}'); states=$(echo "$line" | awk '{print $6}')
  if [ -n "$line" ] && [ "$load" != "-NA-" ] && [ -z "$states" ]; then break; fi
  case "$states" in
    *E*) qmod -cq "all.q@$NODE" >/dev/null 2>&1 || true ;;   # leftover error state from an earlier run
    *d*) qmod -e  "all.q@$NODE" >/dev/null 2>&1 || true ;;   # left disabled by an earlier run
  esac
  [ "$(date +%s)" -ge "$deadline" ] && die "timeout waiting for all.q@$NODE (line: '${line:-none}')"
  sleep 0.2
done
log "queue all.q@$NODE ready (load $load)"

# ---------------------------------------------------------------- 6. smoke test
if [ "$SGE_SMOKE" = 1 ]; then
  out=$(cd / && timeout "$WLM_TIMEOUT" qsub -sync y -b y -N smoke -o /dev/null -e /dev/null /bin/true 2>&1) \
    || die "smoke job failed: $out"
  log "smoke job: $(echo "$out" | tail -1)"
fi
log "SGE ready: $(qstat -f | awk -v q="all.q@$NODE" '$1==q{print $1, $3, "load=" $4}')"
