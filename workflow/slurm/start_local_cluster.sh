#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine (no systemd), to try xdisc's SLURM path:
#   sudo bash workflow/slurm/start_local_cluster.sh [STATE_DIR]      (default /tmp/xdisc-slurm)
#   export SLURM_CONF=STATE_DIR/slurm.conf            (also linked from /etc/slurm/slurm.conf)
#   snakemake --workflow-profile workflow/profiles/slurm --slurm-status-command squeue ...
#   sudo bash workflow/slurm/stop_local_cluster.sh [STATE_DIR]
# Needs root and Debian's packages slurm-wlm and munge (installed here when missing).
# munged, slurmctld and slurmd are started directly; pid files, logs, state and the job
# completion log (jobcomp.log: one line per finished job) live in STATE_DIR.
set -euo pipefail
DIR=${1:-/tmp/xdisc-slurm}
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    echo "start_local_cluster: installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null; }
fi
# a controller already running (another state folder, a run that was killed) holds the ports: the new one
# would die at start while sinfo and sbatch went on talking to the old one, whose job log is elsewhere
running=$(ps -C slurmctld -o pid=,stat=,args= 2>/dev/null | awk '$2 !~ /^Z/' | head -1 || true)  # not zombies
if [ -n "$running" ]; then
    echo "start_local_cluster: a slurmctld is already running and holds port 6817: $running" >&2
    echo "start_local_cluster: stop it first (stop_local_cluster.sh with its state folder, or kill it and its slurmd)" >&2
    exit 1
fi
mkdir -p "$DIR"/{state,spool,log}
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))

# munge: a key, its run directory, the daemon (as user munge)
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n </dev/null >/dev/null 2>&1; then  # a working munged is left alone (and not stopped later)
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid  # user munge can write there
    for _ in $(seq 1 20); do [ -s /run/munge/munged.pid ] && break; sleep 0.25; done
    echo /run/munge/munged.pid > "$DIR/munged.pidfile"  # so that stop_local_cluster.sh stops it
fi

cat > "$DIR/slurm.conf" <<CONF
ClusterName=xdisc
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmdSpoolDir=$DIR/spool
StateSaveLocation=$DIR/state
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=main Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$DIR/slurm.conf"
# job steps (srun inside a batch job) look for the configuration in /etc/slurm: point it here,
# unless the machine has a real configuration of its own
if [ ! -e /etc/slurm/slurm.conf ] || [ -L /etc/slurm/slurm.conf ]; then
    mkdir -p /etc/slurm && ln -sfn "$SLURM_CONF" /etc/slurm/slurm.conf
else
    echo "start_local_cluster: /etc/slurm/slurm.conf exists and is not ours; job steps will use it" >&2
fi
slurmctld -f "$SLURM_CONF" -i
slurmd -f "$SLURM_CONF"
for _ in $(seq 1 30); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        echo "start_local_cluster: node $HOST up ($CPUS CPUs, $MEM_MB MB); export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
    sleep 1
done
echo "start_local_cluster: the node did not come up; see $DIR/log/" >&2
exit 1
