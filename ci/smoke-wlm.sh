#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2154  # unused loop counters; variables assigned inside trap strings
# ci/smoke-wlm.sh - check that the test clusters behave the way poolparty's real-scheduler tests assume.
# Run after ci/start-slurm.sh / ci/start-sge.sh (as root or as a user allowed to submit). ~15-25 s.
#
#   ci/smoke-wlm.sh            both clusters
#   ci/smoke-wlm.sh slurm      only SLURM: scontrol ping/sinfo, MaxArraySize enforced, OUT_OF_MEMORY in sacct
#   ci/smoke-wlm.sh sge        only SGE: qsub -V, script arguments, -t/-tc arrays, qstat -xml -g d, qacct
#
# Exits non-zero with a message naming the failed expectation.
set -Eeuo pipefail
WHICH=${1:-all}
WLM_TIMEOUT=${WLM_TIMEOUT:-120}
T0=$(date +%s%N)
log() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '[smoke-wlm %4d.%01ds] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*"; }
FAILS=0
fail() { echo "[smoke-wlm] FAIL: $*" >&2; FAILS=$((FAILS + 1)); }
trap 'rc=$?; echo "[smoke-wlm] FATAL: command failed (rc=$rc) at line $LINENO: $BASH_COMMAND" >&2; exit $rc' ERR
WORK=$(mktemp -d -t poolparty-smoke.XXXXXX)
chmod 0755 "$WORK"
trap 'rm -rf "$WORK"' EXIT
PY=/usr/bin/python3; [ -x "$PY" ] || PY=$(command -v python3)

smoke_slurm() {
  local out maxarr jobid state i
  log "SLURM: $(scontrol ping 2>&1 | head -1)"
  log "SLURM: sinfo: $(sinfo -h -N -o '%N %T cpus=%c mem=%m' 2>&1 | tr '\n' ' ')"
  maxarr=$(scontrol show config | sed -n 's/^MaxArraySize *= *//p')
  log "SLURM: MaxArraySize=$maxarr MaxJobCount=$(scontrol show config | sed -n 's/^MaxJobCount *= *//p')" \
      "MinJobAge=$(scontrol show config | sed -n 's/^MinJobAge *= *//p')" \
      "$(scontrol show config | grep -E '^(ProctrackType|TaskPlugin) ' | tr -s ' ' | tr '\n' ' ')"

  # MaxArraySize: index MaxArraySize-1 is accepted, MaxArraySize is rejected
  if out=$(cd "$WORK" && sbatch --parsable -H -o /dev/null --array="0-$((maxarr - 1))" --wrap true 2>&1); then
    scancel "$out" >/dev/null 2>&1 || true
    log "SLURM: --array=0-$((maxarr - 1)) accepted (job $out, held, cancelled)"
  else
    fail "SLURM: --array=0-$((maxarr - 1)) rejected: $out"
  fi
  if out=$(cd "$WORK" && sbatch --parsable -H -o /dev/null --array="0-$maxarr" --wrap true 2>&1); then
    scancel "$out" >/dev/null 2>&1 || true
    fail "SLURM: --array=0-$maxarr accepted although MaxArraySize=$maxarr"
  else
    log "SLURM: --array=0-$maxarr rejected as expected: $out"
  fi

  # OOM: 400 MiB into a 100 MiB job -> OUT_OF_MEMORY (cgroup v1) / FAILED (linuxproc + OverMemoryKill)
  jobid=$(cd "$WORK" && timeout "$WLM_TIMEOUT" sbatch --wait --parsable -J smoke-oom --mem=100M -o "$WORK/oom.out" \
            --wrap "$PY -c 'b=bytearray(400*2**20)'" 2>/dev/null || true)
  [ -n "$jobid" ] || jobid=$(squeue -h -t all -n smoke-oom -o %i | sort -n | tail -1)
  state=""
  for i in $(seq 1 150); do   # slurmctld sends the record to slurmdbd asynchronously (up to 30 s)
    state=$(sacct -X -n -P -j "$jobid" -o State 2>&1 | head -1)
    case "$state" in OUT_OF_MEMORY*|FAILED*|COMPLETED*|CANCELLED*) break ;; esac
    sleep 0.2
  done
  log "SLURM: OOM job $jobid: $(sacct -n -P -j "$jobid" -o JobID,State,ExitCode,ReqMem,MaxRSS 2>&1 | tr '\n' ' ')"
  if scontrol show config | grep -E '^ProctrackType *= *proctrack/cgroup' >/dev/null; then
    [ "$state" = OUT_OF_MEMORY ] || fail "SLURM: OOM job $jobid ended in '$state', expected OUT_OF_MEMORY (sacct)"
  else
    log "SLURM: WARNING: no cgroup v1 memory controller: OOM shows as '$state', not OUT_OF_MEMORY"
    [ "${state%% *}" = FAILED ] || fail "SLURM: OOM job $jobid ended in '$state', expected FAILED (OverMemoryKill)"
  fi
}

smoke_sge() {
  local out jobid n xml
  log "SGE: $(qstat -f | awk '$1 ~ /@/ {print $1, $3, "load=" $4, "states=" ($6 == "" ? "-" : $6)}' | tr '\n' ' ')"
  cat > "$WORK/args.sh" <<'EOF'
#!/bin/sh
printf 'nargs=%s 1=[%s] 2=[%s] 3=[%s] SMOKE_VAR=[%s]\n' "$#" "$1" "$2" "$3" "$SMOKE_VAR"
EOF
  # -V exports the submitter's environment; arguments after the script arrive as "$@", spaces intact
  out=$(cd "$WORK" && SMOKE_VAR='v a r' timeout "$WLM_TIMEOUT" qsub -sync y -V -S /bin/sh -N smoke-args \
          -o "$WORK/args.out" -j y "$WORK/args.sh" a 'b c' "d'e" 2>&1) || fail "SGE: qsub -sync y -V failed: $out"
  log "SGE: script job output: $(cat "$WORK/args.out" 2>/dev/null)"
  grep -Fx "nargs=3 1=[a] 2=[b c] 3=[d'e] SMOKE_VAR=[v a r]" "$WORK/args.out" >/dev/null \
    || fail "SGE: script arguments / -V environment did not arrive intact"

  # array, at most 2 tasks at a time; pending tasks are listed one per line by qstat -xml -g d
  printf '#!/bin/sh\necho "task $SGE_TASK_ID of $SGE_TASK_FIRST-$SGE_TASK_LAST"\nsleep 1\n' > "$WORK/arr.sh"
  jobid=$(cd "$WORK" && qsub -terse -t 1-10 -tc 2 -S /bin/sh -N smoke-arr -o "$WORK/arr.\$TASK_ID.out" -j y "$WORK/arr.sh")
  jobid=${jobid%%.*}
  log "SGE: array job $jobid (-t 1-10 -tc 2) submitted"
  xml=$(qstat -u '*' -g d -xml)
  n=$(printf '%s\n' "$xml" | "$PY" -c '
import sys, xml.etree.ElementTree as ET
jid = sys.argv[1]
root = ET.fromstring(sys.stdin.read())
pend = [j.findtext("tasks") for j in root.iter("job_list")
        if j.get("state") == "pending" and j.findtext("JB_job_number") == jid]
run = [j for j in root.iter("job_list") if j.get("state") == "running" and j.findtext("JB_job_number") == jid]
print(len(pend), len(run), ",".join(t or "-" for t in pend))' "$jobid")
  log "SGE: qstat -xml -g d right after submit: pending/running/pending-task-ids = $n"
  case "$n" in
    "0 "*) fail "SGE: qstat -xml -g d listed no pending task of array $jobid" ;;
    *) [[ ${n##* } =~ ^[0-9]+(,[0-9]+)*$ ]] || fail "SGE: pending entries are not one per task: $n" ;;
  esac
  local deadline=$(( $(date +%s) + WLM_TIMEOUT )) maxrun=0 r
  while qstat -j "$jobid" >/dev/null 2>&1; do
    r=$(qstat -u '*' -g d | awk -v j="$jobid" '$1 == j && $5 ~ /r/' | wc -l)
    [ "$r" -gt "$maxrun" ] && maxrun=$r
    [ "$(date +%s)" -ge "$deadline" ] && { fail "SGE: array $jobid not done after ${WLM_TIMEOUT}s"; break; }
    sleep 0.3
  done
  n=$(cat "$WORK"/arr.*.out 2>/dev/null | grep -c '^task ' || true)
  log "SGE: array done: $n task outputs, at most $maxrun running at once"
  [ "$n" = 10 ] || fail "SGE: expected 10 task outputs, got $n"
  [ "$maxrun" -le 2 ] || fail "SGE: -tc 2 violated ($maxrun tasks running at once)"
  # the qmaster appends accounting records lazily: wait up to 30 s for all 10 (seen: 8 of 10 at first)
  n=0
  for i in $(seq 1 150); do
    n=$(qacct -j "$jobid" 2>/dev/null | grep -c '^taskid' || true)
    [ "$n" = 10 ] && break
    sleep 0.2
  done
  log "SGE: qacct -j $jobid: $n task records"
  [ "$n" = 10 ] || fail "SGE: qacct shows $n task records for array $jobid, expected 10"
}

case "$WHICH" in
  all)   smoke_slurm; smoke_sge ;;
  slurm) smoke_slurm ;;
  sge)   smoke_sge ;;
  *) echo "usage: $0 [all|slurm|sge]" >&2; exit 2 ;;
esac
if [ "$FAILS" -gt 0 ]; then echo "[smoke-wlm] $FAILS check(s) FAILED" >&2; exit 1; fi
log "all checks passed ($WHICH)"
