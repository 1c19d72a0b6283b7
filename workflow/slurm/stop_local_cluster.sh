#!/usr/bin/env bash
# Stop the single-node cluster of start_local_cluster.sh by its pid files:
#   sudo bash workflow/slurm/stop_local_cluster.sh [STATE_DIR]      (default /tmp/xdisc-slurm)
set -uo pipefail
DIR=${1:-/tmp/xdisc-slurm}
for name in slurmd slurmctld munged; do
    pidfile="$DIR/$name.pid"
    if [ "$name" = munged ]; then  # only the munged that start_local_cluster.sh started
        [ -s "$DIR/munged.pidfile" ] || continue
        pidfile=$(cat "$DIR/munged.pidfile")
        rm -f "$DIR/munged.pidfile"
    fi
    if [ -s "$pidfile" ]; then
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null && echo "stop_local_cluster: stopped $name ($pid)"
        for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$pidfile"
    fi
done
if [ -L /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$DIR/slurm.conf" ]; then
    rm -f /etc/slurm/slurm.conf
fi
