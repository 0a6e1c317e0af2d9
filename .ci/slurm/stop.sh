#!/usr/bin/env bash
# Stop the daemons .ci/slurm/start.sh started, by their recorded PIDs.
# Cancels remaining jobs first. Only kills a PID whose /proc/PID/comm matches.
set -uo pipefail
PIDFILE=${SLURM_PIDFILE:-/tmp/rankbits-slurm/pids}
log() { echo "[rankbits-slurm stop] $*" >&2; }
[ -s "$PIDFILE" ] || { log "no pid file $PIDFILE; nothing to stop"; exit 0; }

# cancel any jobs left on this private cluster so no slurmstepd lingers
if command -v squeue >/dev/null && scontrol ping >/dev/null 2>&1; then
  jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    log "cancelling jobs: $jobs"; scancel $jobs 2>/dev/null
    for _ in $(seq 50); do [ -z "$(squeue -h -t R,CG -o %i 2>/dev/null)" ] && break; sleep 0.2; done
  fi
fi

stop_one() {  # stop_one NAME
  local name=$1 pid
  pid=$(awk -v n="$name" '$1==n {print $2}' "$PIDFILE")
  [ -n "$pid" ] || return 0
  if [ "$(cat /proc/$pid/comm 2>/dev/null)" != "$name" ]; then
    log "$name ($pid) not running"; return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 100); do
    { [ ! -d /proc/$pid ] || grep -q '^State:.*Z' /proc/$pid/status 2>/dev/null; } \
      && { log "stopped $name ($pid)"; return 0; }
    sleep 0.2
  done
  log "$name ($pid) ignored SIGTERM; sending SIGKILL"; kill -KILL "$pid" 2>/dev/null
}
# order: compute node, controller, authentication
stop_one slurmd
stop_one slurmctld
stop_one munged
# slurmctld/slurmdbd run as user slurm and cannot unlink their root-owned
# pidfiles; a stale /run/slurmctld.pid makes the slurmctld package's prerm
# (apt-get remove/purge) fail, so remove them here.
rm -f "$PIDFILE" /run/slurmctld.pid /run/slurmd.pid
