# shellcheck shell=bash
# ci/lib.sh - helpers shared by ci/start-*.sh and ci/stop-*.sh. Sourced, never run.
# The sourcing script defines log() and die() first; WLM_TIMEOUT (seconds) bounds every wait.

# pid_of <pidfile> <comm> : print the pid if the pid file names a live process with that comm
# (pids recycle quickly here: a stale pid file must never make us signal a stranger)
pid_of() {
  local pf=$1 comm=$2 pid
  [ -s "$pf" ] || return 1
  pid=$(tr -dc '0-9' < "$pf"); [ -n "$pid" ] || return 1
  [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$comm" ] || return 1
  echo "$pid"
}

# stop_pidfile <pidfile> <comm> : TERM the daemon, wait up to WLM_TIMEOUT for it to exit, then KILL
stop_pidfile() {
  local pf=$1 comm=$2 pid _
  pid=$(pid_of "$pf" "$comm") || { log "$comm not running"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $(( WLM_TIMEOUT * 5 ))); do
    [ -d /proc/"$pid" ] || { log "stopped $comm (pid $pid)"; rm -f "$pf"; return 0; }
    sleep 0.2
  done
  log "WARNING: $comm (pid $pid) ignored TERM for ${WLM_TIMEOUT}s, sending KILL"; kill -KILL "$pid" 2>/dev/null || true
}

# missing_packages <pkg...> : print the ones dpkg does not have installed
missing_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'install ok installed' >/dev/null || echo "$p"
  done
}

# apt_install <logfile> <pkg...> : apt-get update + install, quietly (the log's tail on failure).
# Maintainer scripts may not start daemons (no systemd here; the start scripts start them by hand).
# DPkg::Lock::Timeout: wait (up to 5 min) for apt-daily/unattended-upgrades on a freshly booted machine.
apt_install() {
  local apt_log=$1 policy_added=0 rc=0; shift
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; policy_added=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=300 update -qq < /dev/null > "$apt_log" 2>&1 \
    || { tail -20 "$apt_log" >&2; log "WARNING: apt-get update failed; trying the install anyway"; }
  apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "$@" < /dev/null >> "$apt_log" 2>&1 || rc=$?
  [ "$policy_added" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || { tail -30 "$apt_log" >&2; die "apt-get install $* failed (full log: $apt_log)"; }
  log "packages installed"
}

# wait_for <what> <cmd...> : run cmd every 0.2 s until it succeeds; die after WLM_TIMEOUT seconds
wait_for() {
  local what=$1; shift; local deadline=$(( $(date +%s) + WLM_TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$deadline" ] && die "timeout (${WLM_TIMEOUT}s) waiting for: $what"
    sleep 0.2
  done
}

# start_daemon <logfile> <cmd...> : start a self-daemonizing program; its early output goes to logfile
start_daemon() {
  local daemon_log=$1; shift
  echo "=== $(date '+%F %T') $*" >> "$daemon_log"
  "$@" < /dev/null >> "$daemon_log" 2>&1 || die "'$*' failed to start (rc=$?)"
}

# pid_alive <pidfile> <comm> : true if the pid file names a live process with that comm
pid_alive() { pid_of "$1" "$2" >/dev/null; }
