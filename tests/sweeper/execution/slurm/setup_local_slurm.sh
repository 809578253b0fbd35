#!/usr/bin/env bash
# A single-node SLURM on this machine for the `slurm` tests: Debian's slurm-wlm and munge, slurmctld and slurmd
# started as root without systemd. Idempotent: safe to run again; it restarts nothing that is already up.
# Needs root and Debian's package registry. About 10 s on a fresh machine (install 5 s, daemons 1 s).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "setup_local_slurm.sh: needs root (it installs packages and starts daemons)" >&2
    exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || true   # an offline mirror may refuse; the install below says if it matters
    apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

host=$(hostname -s)
conf=/etc/slurm/slurm.conf
# the node line (CPUs, sockets, memory) as slurmd sees this machine, minus what the config must not pin
node=$(slurmd -C | head -1 | sed -e "s/^NodeName=[^ ]*/NodeName=${host}/")
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
cat > "${conf}.new" <<CONF
# written by tests/sweeper/execution/slurm/setup_local_slurm.sh: one node, everything on 127.0.0.1
ClusterName=local
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MailProg=/bin/true
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
MinJobAge=3600
KillWait=10
${node} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=EXCLUSIVE
CONF
if ! cmp -s "${conf}.new" "${conf}"; then
    mv "${conf}.new" "${conf}"
    restart=1
else
    rm "${conf}.new"
    restart=0
fi

if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- munged --force

if [ "$restart" -eq 1 ]; then
    pkill -x slurmctld || true
    pkill -x slurmd || true
    for _ in $(seq 1 30); do  # a stopping slurmctld saves its state first: wait until both are gone
        pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break
        sleep 1
    done
fi
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd

for _ in $(seq 1 30); do
    if sinfo -h -o '%T' 2>/dev/null | grep -q -E '^(idle|mixed|allocated)'; then
        sinfo
        exit 0
    fi
    sleep 1
done
echo "setup_local_slurm.sh: the node did not come up; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
sinfo >&2 || true
exit 1
