#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2154  # unused loop counters; variables assigned inside trap strings
# ci/start-slurm.sh - bring up a single-node SLURM 22.05 TEST cluster on Debian 12, as root, without systemd.
#
# For CI and development machines only: one host runs munged, slurmctld, slurmd and (by default) mariadb +
# slurmdbd so that `sacct` works; the node advertises more CPUs than the machine has. Not a production setup.
#
# Idempotent: installs missing packages, (re)writes /etc/slurm/{slurm,cgroup,slurmdbd}.conf, starts only the
# daemons that are not running (restarts slurmctld/slurmd if the generated config changed), resumes a node left
# DOWN/DRAINED, waits until the node is idle/mixed and a trivial `sbatch --wait` job has completed.
# Loud on failure: non-zero exit, the failing step and the tails of the daemon logs on stderr.
#
# Knobs (environment):
#   SLURM_CPUS=16                CPUs advertised for the node (overcommit; raised to nproc if smaller)
#   SLURM_MAX_ARRAY_SIZE=1001    MaxArraySize (SLURM's default 1001: array indices 0..1000); CI uses 101
#   SLURM_MAX_JOB_COUNT=100000   MaxJobCount (SLURM's default is 10000)
#   SLURM_MIN_JOB_AGE=300        MinJobAge: seconds a finished job stays visible to squeue/scontrol
#   SLURM_ACCOUNTING=slurmdbd    slurmdbd = mariadb + slurmdbd -> real `sacct`, sshare/fair-share
#                                none     = no database; jobcomp/filetxt only (`sacct -c` reads it)
#   SLURM_CGROUP=auto            auto|yes|no: proctrack/cgroup + task/cgroup (real OUT_OF_MEMORY) if the cgroup
#                                v1 memory controller is writable, else proctrack/linuxproc + OverMemoryKill
#   SLURM_TUNE=1                 1 = fast-turnaround scheduler settings, 0 = SLURM defaults (for baselines)
#   SLURM_CLEAN=0                1 = start slurmctld with -c (drop saved jobs and node state)
#   SLURM_SMOKE=1                run a trivial `sbatch --wait` job at the end
#   SLURM_EXTRA_USERS=""         more users to add to the accounting account "pp" (root and $SUDO_USER always)
#   WLM_TIMEOUT=120              seconds to wait for each readiness condition
set -Eeuo pipefail

SLURM_CPUS=${SLURM_CPUS:-16}
SLURM_MAX_ARRAY_SIZE=${SLURM_MAX_ARRAY_SIZE:-1001}
SLURM_MAX_JOB_COUNT=${SLURM_MAX_JOB_COUNT:-100000}
SLURM_MIN_JOB_AGE=${SLURM_MIN_JOB_AGE:-300}
SLURM_ACCOUNTING=${SLURM_ACCOUNTING:-slurmdbd}
SLURM_CGROUP=${SLURM_CGROUP:-auto}
SLURM_TUNE=${SLURM_TUNE:-1}
SLURM_CLEAN=${SLURM_CLEAN:-0}
SLURM_SMOKE=${SLURM_SMOKE:-1}
SLURM_EXTRA_USERS=${SLURM_EXTRA_USERS:-}
WLM_TIMEOUT=${WLM_TIMEOUT:-120}
CLUSTER=poolparty
ACCOUNT=pp
PARTITION=debug
CONFDIR=/etc/slurm
CONF=$CONFDIR/slurm.conf
LOGDIR=/var/log/slurm
APT_LOG=/var/log/start-slurm-apt.log

T0=$(date +%s%N)
log() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '[start-slurm %4d.%01ds] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*"; }
dump_logs() {
  local f
  for f in "$LOGDIR"/slurmctld.log "$LOGDIR"/slurmd.log "$LOGDIR"/slurmdbd.log "$LOGDIR"/daemon-start.log \
           /var/log/munge/munged.log /var/log/mysql-start-slurm.log; do
    [ -s "$f" ] && { echo "---- tail -n 20 $f" >&2; tail -n 20 "$f" >&2; }
  done
  return 0
}
die() { trap - ERR; echo "[start-slurm] FATAL: $*" >&2; dump_logs; exit 1; }
trap 'rc=$?; trap - ERR; echo "[start-slurm] FATAL: command failed (rc=$rc) at line $LINENO: $BASH_COMMAND" >&2; dump_logs; exit $rc' ERR

# shellcheck source=ci/lib.sh
. "$(dirname "$0")/lib.sh"
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

[ "$(id -u)" = 0 ] || die "must run as root (try: sudo $0)"
grep -q 'VERSION_ID="12"' /etc/os-release 2>/dev/null || log "WARNING: not Debian 12; continuing anyway"
for v in SLURM_CPUS SLURM_MAX_ARRAY_SIZE SLURM_MAX_JOB_COUNT SLURM_MIN_JOB_AGE WLM_TIMEOUT; do
  is_uint "${!v}" || die "$v must be a non-negative integer (got '${!v}')"
done
[ "$SLURM_MAX_ARRAY_SIZE" -ge 1 ] && [ "$SLURM_MAX_ARRAY_SIZE" -le 4000001 ] \
  || die "SLURM_MAX_ARRAY_SIZE must be 1..4000001 (got $SLURM_MAX_ARRAY_SIZE)"
[ "$SLURM_MAX_ARRAY_SIZE" -le "$SLURM_MAX_JOB_COUNT" ] \
  || die "SLURM_MAX_ARRAY_SIZE ($SLURM_MAX_ARRAY_SIZE) must not exceed SLURM_MAX_JOB_COUNT ($SLURM_MAX_JOB_COUNT)"
case "$SLURM_ACCOUNTING" in slurmdbd|none) ;; *) die "SLURM_ACCOUNTING must be slurmdbd|none" ;; esac
case "$SLURM_CGROUP" in auto|yes|no) ;; *) die "SLURM_CGROUP must be auto|yes|no" ;; esac

# ---------------------------------------------------------------- 1. packages
PKGS=(slurm-wlm slurmctld slurmd slurm-client munge procps)
[ "$SLURM_ACCOUNTING" = slurmdbd ] && PKGS+=(slurmdbd mariadb-server mariadb-client)
mapfile -t missing < <(missing_packages "${PKGS[@]}")
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  apt_install "$APT_LOG" "${missing[@]}"
else
  log "packages already installed"
fi

# ---------------------------------------------------------------- 2. host facts
NODE=$(hostname -s)
getent hosts "$NODE" >/dev/null || { echo "127.0.1.1 $NODE" >> /etc/hosts; log "added $NODE to /etc/hosts"; }
HWMEM=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
[ -n "$HWMEM" ] || die "cannot read RealMemory from 'slurmd -C'"
REALMEM=$(( HWMEM * 95 / 100 ))
NPROC=$(nproc)
[ "$SLURM_CPUS" -lt "$NPROC" ] && SLURM_CPUS=$NPROC
DEFMEM=$(( REALMEM / SLURM_CPUS )); [ "$DEFMEM" -gt 1024 ] && DEFMEM=1024

# cgroup v1 memory controller writable? (hybrid/legacy hierarchy; SLURM 22.05's cgroup/v2 needs systemd)
CG_PROBE=/sys/fs/cgroup/memory/.start_slurm_probe_$$
CG_INFO="$(stat -fc %T /sys/fs/cgroup 2>/dev/null || echo none)"
CG_OK=0
if [ "$CG_INFO" != cgroup2fs ] && [ -d /sys/fs/cgroup/memory ] && mkdir "$CG_PROBE" 2>/dev/null; then
  [ -e "$CG_PROBE/memory.limit_in_bytes" ] && CG_OK=1
  rmdir "$CG_PROBE"
fi
case "$SLURM_CGROUP" in
  yes) USE_CGROUP=1; [ "$CG_OK" = 1 ] || log "WARNING: SLURM_CGROUP=yes but cgroup v1 memory is not writable (/sys/fs/cgroup is $CG_INFO)" ;;
  no)  USE_CGROUP=0 ;;
  auto) USE_CGROUP=$CG_OK ;;
esac
log "cgroup: /sys/fs/cgroup is $CG_INFO, v1 memory controller writable=$CG_OK -> use cgroup=$USE_CGROUP"

# ---------------------------------------------------------------- 3. config files
mkdir -p "$CONFDIR" /var/lib/slurm/slurmctld /var/lib/slurm/slurmd "$LOGDIR"
chown slurm:slurm /var/lib/slurm/slurmctld "$LOGDIR"
NEW=$(mktemp)
{
  echo "# generated by poolparty ci/start-slurm.sh - single-node TEST cluster; edits are overwritten"
  echo "ClusterName=$CLUSTER"
  echo "SlurmctldHost=$NODE"
  echo "AuthType=auth/munge"
  echo "CryptoType=crypto/munge"
  echo "MpiDefault=none"
  echo "SlurmUser=slurm"
  echo "SwitchType=switch/none"
  echo "StateSaveLocation=/var/lib/slurm/slurmctld"
  echo "SlurmdSpoolDir=/var/lib/slurm/slurmd"
  echo "SlurmctldPidFile=/run/slurmctld.pid"
  echo "SlurmdPidFile=/run/slurmd.pid"
  echo "SlurmctldLogFile=$LOGDIR/slurmctld.log"
  echo "SlurmdLogFile=$LOGDIR/slurmd.log"
  echo "SlurmctldDebug=info"
  echo "SlurmdDebug=info"
  echo "MailProg=/bin/true"
  echo "ReturnToService=2"
  if [ "$USE_CGROUP" = 1 ]; then
    echo "ProctrackType=proctrack/cgroup"
    echo "TaskPlugin=task/cgroup"
  else
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "JobAcctGatherParams=OverMemoryKill"
  fi
  echo "JobAcctGatherType=jobacct_gather/linux"
  echo "SchedulerType=sched/backfill"
  echo "SelectType=select/cons_tres"
  echo "SelectTypeParameters=CR_Core_Memory"
  echo "DefMemPerCPU=$DEFMEM"
  echo "JobCompType=jobcomp/filetxt"
  echo "JobCompLoc=$LOGDIR/jobcomp.log"
  if [ "$SLURM_ACCOUNTING" = slurmdbd ]; then
    echo "AccountingStorageType=accounting_storage/slurmdbd"
    echo "AccountingStorageHost=localhost"
    echo "PriorityType=priority/multifactor"
    echo "PriorityWeightFairshare=10000"
    echo "PriorityWeightAge=1000"
    echo "PriorityDecayHalfLife=0-1"
  else
    echo "AccountingStorageType=accounting_storage/none"
    echo "PriorityType=priority/basic"
  fi
  echo "MaxArraySize=$SLURM_MAX_ARRAY_SIZE"
  echo "MaxJobCount=$SLURM_MAX_JOB_COUNT"
  echo "MinJobAge=$SLURM_MIN_JOB_AGE"
  if [ "$SLURM_TUNE" = 1 ]; then
    echo "# fast turnaround for tests (defaults: batch_sched_delay=3, sched_interval=60, bf_interval=30,"
    echo "# KillWait=30, SlurmdTimeout=300, cred_expire=120 -> a requeued job waits 120 s)"
    echo "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,bf_interval=2,sched_interval=5"
    echo "KillWait=5"
    echo "SlurmdTimeout=20"
    echo "AuthInfo=cred_expire=10"
    echo "JobAcctGatherFrequency=task=1"
  fi
  [ "$SLURM_CPUS" -gt "$NPROC" ] && echo "SlurmdParameters=config_overrides"
  echo "NodeName=$NODE CPUs=$SLURM_CPUS RealMemory=$REALMEM State=UNKNOWN"
  echo "PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP"
} > "$NEW"
CHANGED=0
if ! cmp -s "$NEW" "$CONF"; then
  install -m 0644 "$NEW" "$CONF"; CHANGED=1; log "wrote $CONF"
fi
printf 'CgroupPlugin=autodetect\nConstrainCores=no\nConstrainRAMSpace=yes\n' > "$NEW"
if ! cmp -s "$NEW" "$CONFDIR/cgroup.conf"; then
  install -m 0644 "$NEW" "$CONFDIR/cgroup.conf"; CHANGED=1; log "wrote $CONFDIR/cgroup.conf"
fi
rm -f "$NEW"

# ---------------------------------------------------------------- 4. munge
[ -s /etc/munge/munge.key ] || { mungekey --create --force; log "created munge key"; }
chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
if ! pid_alive /run/munge/munged.pid munged; then
  start_daemon "$LOGDIR"/daemon-start.log runuser -u munge -- /usr/sbin/munged
  log "started munged"
fi
wait_for "munge round-trip (munge -n | unmunge)" bash -c 'munge -n | unmunge'

# ---------------------------------------------------------------- 5. mariadb + slurmdbd (optional)
if [ "$SLURM_ACCOUNTING" = slurmdbd ]; then
  if ! mysqladmin ping >/dev/null 2>&1; then
    install -d -o mysql -g mysql -m 0755 /run/mysqld
    setsid /usr/sbin/mariadbd --user=mysql < /dev/null >> /var/log/mysql-start-slurm.log 2>&1 &
    wait_for "mariadb (mysqladmin ping)" mysqladmin ping
    log "started mariadbd"
  fi
  # the database password lives only in slurmdbd.conf (0600, owner slurm); keep it across runs
  DB_PASS=$(sed -n 's/^StoragePass=//p' "$CONFDIR/slurmdbd.conf" 2>/dev/null || true)
  [ -n "$DB_PASS" ] || DB_PASS=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
  mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
            CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
            ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  DBD_NEW=$(mktemp)
  cat > "$DBD_NEW" <<EOF
# generated by poolparty ci/start-slurm.sh - TEST cluster
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
DebugLevel=info
LogFile=$LOGDIR/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  if ! cmp -s "$DBD_NEW" "$CONFDIR/slurmdbd.conf"; then
    install -m 0600 -o slurm -g slurm "$DBD_NEW" "$CONFDIR/slurmdbd.conf"
    stop_pidfile /run/slurmdbd.pid slurmdbd
    log "wrote $CONFDIR/slurmdbd.conf"
  fi
  rm -f "$DBD_NEW"
  if ! pid_alive /run/slurmdbd.pid slurmdbd; then
    start_daemon "$LOGDIR"/daemon-start.log slurmdbd
    log "started slurmdbd"
  fi
  wait_for "slurmdbd answering (sacctmgr list cluster)" sacctmgr -n list cluster
  sacctmgr -n -P list cluster format=cluster | grep -x "$CLUSTER" >/dev/null || sacctmgr -i add cluster "$CLUSTER" >/dev/null
  sacctmgr -n -P list account format=account | grep -x "$ACCOUNT" >/dev/null \
    || sacctmgr -i add account "$ACCOUNT" Description=poolparty Organization=poolparty >/dev/null
  for u in root ${SUDO_USER:-} $SLURM_EXTRA_USERS; do
    id "$u" >/dev/null 2>&1 || die "SLURM_EXTRA_USERS: no such user '$u'"
    sacctmgr -n -P list assoc format=user,account | grep -x "$u|$ACCOUNT" >/dev/null \
      || sacctmgr -i add user "$u" Account="$ACCOUNT" >/dev/null
  done
  log "slurmdbd ready (cluster $CLUSTER, account $ACCOUNT)"
fi

# ---------------------------------------------------------------- 6. slurmctld + slurmd
if [ "$CHANGED" = 1 ] && { pid_alive /run/slurmctld.pid slurmctld || pid_alive /run/slurmd.pid slurmd; }; then
  log "config changed: restarting slurmctld and slurmd"
  stop_pidfile /run/slurmd.pid slurmd
  stop_pidfile /run/slurmctld.pid slurmctld
fi
if ! pid_alive /run/slurmctld.pid slurmctld; then
  if [ "$SLURM_CLEAN" = 1 ]; then start_daemon "$LOGDIR"/daemon-start.log slurmctld -c; else start_daemon "$LOGDIR"/daemon-start.log slurmctld; fi
  log "started slurmctld"
fi
wait_for "slurmctld answering (scontrol ping)" bash -c 'scontrol ping | grep "is UP" >/dev/null'
if ! pid_alive /run/slurmd.pid slurmd; then
  start_daemon "$LOGDIR"/daemon-start.log slurmd
  log "started slurmd"
fi

# wait for the node: idle/mixed/allocated; resume it if an earlier run left it DOWN/DRAINED
deadline=$(( $(date +%s) + WLM_TIMEOUT ))
while :; do
  st=$(sinfo -h -n "$NODE" -o '%T' 2>/dev/null || true)
  case "$st" in
    idle|mixed|allocated|completing) break ;;
    *drain*|down*|fail*) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
  esac
  [ "$(date +%s)" -ge "$deadline" ] && die "timeout waiting for node $NODE to become idle (state: '${st:-?}')"
  sleep 0.2
done
got=$(scontrol show config | sed -n 's/^MaxArraySize *= *//p')
[ "$got" = "$SLURM_MAX_ARRAY_SIZE" ] || die "slurmctld reports MaxArraySize=$got, expected $SLURM_MAX_ARRAY_SIZE"
log "node $NODE is $st (CPUs=$SLURM_CPUS RealMemory=$REALMEM cgroup=$USE_CGROUP accounting=$SLURM_ACCOUNTING" \
    "tune=$SLURM_TUNE MaxArraySize=$SLURM_MAX_ARRAY_SIZE MinJobAge=$SLURM_MIN_JOB_AGE)"

# ---------------------------------------------------------------- 7. smoke test
if [ "$SLURM_SMOKE" = 1 ]; then
  out=$(cd / && timeout "$WLM_TIMEOUT" sbatch --wait --parsable -J smoke -o /dev/null -e /dev/null --wrap true 2>&1) \
    || die "smoke job failed (sbatch --wait rc=$?): $out"
  log "smoke job $out completed"
fi
log "SLURM ready: $(sinfo -h -o 'partition=%P avail=%a nodes=%D state=%T cpus(A/I/O/T)=%C' | tr '\n' ' ')"
