#!/usr/bin/env bash
# A real single-node SLURM cluster (munge + slurmctld + slurmd, Debian packages) for CI:
# the tests marked `slurm` submit dask-jobqueue workers and sbatch jobs to it.
#
#   .ci/slurm.sh start    install (apt-get, needs root) if missing, configure, start; idempotent
#   .ci/slurm.sh status   sinfo + squeue (exit 1 if the controller does not answer)
#   .ci/slurm.sh stop     stop the daemons by their pid files (waits until they exit)
#
# One partition, "debug", holds this host; jobs run as root. Logs: /var/log/slurm/.
# Adapted from ../shared/scripts/local-slurm.sh.
set -euo pipefail

cmd=${1:-start}
conf_dir=/etc/slurm
conf=$conf_dir/slurm.conf
pids=(/run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid)

log() { echo "slurm.sh: $*" >&2; }

need_root() {
  if [ "$(id -u)" -eq 0 ]; then
    return 0
  fi
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    exec sudo -n -E bash "$0" "$cmd" # e.g. a CI runner user with password-less sudo
  fi
  log "must run as root (installs Debian packages and starts daemons); found uid $(id -u)"
  exit 1
}

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
    && command -v munged >/dev/null && command -v sbatch >/dev/null; then
    return 0
  fi
  log "installing slurm-wlm and munge from Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

host_name() { hostname -s 2>/dev/null || uname -n; }

# RealMemory must not exceed what slurmd detects, or the node is drained; leave 2 GB spare.
mem_mb() {
  local total
  total=$(awk '/^MemTotal:/{print int($2 / 1024)}' /proc/meminfo)
  if [ "$total" -gt 4000 ]; then echo $((total - 2000)); else echo $((total / 2)); fi
}

configure() {
  local host cpus mem tmp
  host=$(host_name)
  # nproc honours OMP_NUM_THREADS (a test process sets it to 1): count the CPUs without it
  cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
  mem=$(mem_mb)
  mkdir -p "$conf_dir" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm \
    /run/munge /var/lib/munge /var/log/munge /etc/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  fi
  # Daemons run as root here (no munge/slurm service users in a bare CI container).
  chown -R root:root /etc/munge /run/munge /var/lib/munge /var/log/munge
  chmod 700 /etc/munge /var/lib/munge /var/log/munge
  chmod 755 /run/munge
  chmod 400 /etc/munge/munge.key
  tmp=$(mktemp)
  cat >"$tmp" <<CONF
# Written by .ci/slurm.sh: single-node test cluster.
ClusterName=local
SlurmctldHost=$host
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=60
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  if [ -s "$conf" ] && cmp -s "$tmp" "$conf"; then
    rm -f "$tmp"
    return 1 # unchanged
  fi
  install -m 644 "$tmp" "$conf"
  rm -f "$tmp"
  return 0 # changed
}

# A zombie (exited, not yet reaped: containers whose pid 1 does not reap) counts as gone.
alive() {
  kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ]
}

running() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && alive "$pid"
}

node_state() { sinfo -h -N -o %t 2>/dev/null | head -n1; }

start() {
  need_root
  install_packages
  local changed=0
  configure && changed=1
  running /run/munge/munged.pid || /usr/sbin/munged --force
  if running /run/slurmctld.pid && [ "$changed" = 1 ]; then
    log "slurm.conf changed: restarting the daemons"
    stop_daemon /run/slurmd.pid
    stop_daemon /run/slurmctld.pid
  fi
  running /run/slurmctld.pid || /usr/sbin/slurmctld
  running /run/slurmd.pid || /usr/sbin/slurmd
  local state=""
  for _ in $(seq 1 60); do
    state=$(node_state)
    case "$state" in
      idle* | mix* | alloc*)
        sinfo
        return 0
        ;;
      drain* | down* | drng*)
        # A node left drained by an earlier (killed) run comes back on request.
        scontrol update NodeName="$(host_name)" State=RESUME 2>/dev/null || true
        ;;
    esac
    sleep 1
  done
  log "the node did not become idle (last state: '${state}'); see /var/log/slurm/"
  tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
  return 1
}

# Stop the daemon whose pid is in file $1 and wait until it has exited. The pid is read once:
# daemons delete their pid file as they exit.
stop_daemon() {
  local f=$1 pid
  pid=$(cat "$f" 2>/dev/null) || return 0
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 60); do
    alive "$pid" || return 0
    sleep 0.5
  done
  log "process $pid from $f did not exit after 30 s"
  return 1
}

stop() {
  need_root
  local f
  for f in "${pids[@]}"; do
    stop_daemon "$f"
  done
}

status() {
  sinfo && squeue
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *)
    echo "usage: $0 start|status|stop" >&2
    exit 2
    ;;
esac
