#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests of hydra/launcher=slurm and for a user
# who wants to try a sweep on SLURM without a cluster (docs/clusters.md).
#
#   .ci/slurm.sh start    # install Debian's slurm-wlm and munge if absent, write the config, start the daemons
#   .ci/slurm.sh status   # sinfo
#   .ci/slurm.sh stop     # stop the daemons (the packages and config stay)
#
# Root only (it installs packages and runs slurmctld/slurmd as root, munged as the munge user).
# The node is this host with all its cores and memory, in one partition `debug`; no accounting
# (no slurmdbd), so `sacct` has nothing to say: bench's launcher config quiets submitit's retries.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
LOGS=/var/log/slurm

need_root() {
  if [ "$(id -u)" != 0 ]; then echo "slurm.sh: run as root (it installs packages and starts daemons)" >&2; exit 2; fi
}

install() {
  if command -v slurmctld >/dev/null && command -v munged >/dev/null; then return; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_config() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))  # MiB, less a margin for the daemons
  mkdir -p /etc/slurm "$STATE" "$SPOOL" "$LOGS"
  cat > "$CONF" <<EOF
# Written by .ci/slurm.sh: a one-node cluster on $host.
ClusterName=peftbench
SlurmctldHost=$host
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
# no cgroups in a container: plain process tracking, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# no accounting daemon: sacct answers nothing (bench's launcher asks squeue instead)
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# a cancelled or timed-out job's processes get SIGTERM, then SIGKILL this many seconds later
KillWait=30
# time limits are enforced within this many seconds
OverTimeLimit=0
InactiveLimit=0
MinJobAge=300
SchedulerParameters=defer_batch
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  if pgrep -x munged >/dev/null; then return; fi
  mkdir -p /run/munge /var/lib/munge /var/log/munge /etc/munge
  [ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  chown -R munge:munge /run/munge /var/lib/munge /var/log/munge /etc/munge
  chmod 0400 /etc/munge/munge.key
  chmod 0700 /etc/munge /var/lib/munge /var/log/munge
  chmod 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged
}

start() {
  need_root
  install
  write_config
  start_munge
  pgrep -x slurmctld >/dev/null || slurmctld
  pgrep -x slurmd >/dev/null || slurmd
  for _ in $(seq 1 60); do  # the node registers within a few seconds
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
      sinfo
      return
    fi
    sleep 1
  done
  echo "slurm.sh: the node did not come up; logs in $LOGS" >&2
  tail -20 "$LOGS/slurmctld.log" "$LOGS/slurmd.log" >&2 || true
  exit 1
}

stop() {
  need_root
  pkill -x slurmd || true
  pkill -x slurmctld || true
  pkill -x munged || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) sinfo ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
