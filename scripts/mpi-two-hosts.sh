#!/bin/bash
# Two "hosts" on one machine: network namespaces fa (10.77.0.1) and fb (10.77.0.2) joined by a veth
# pair, one rank in each, Open MPI's TCP transport between them (no shared memory). mpirun runs in
# fa and starts the rank in fb through an rsh agent that enters fb's namespace instead of ssh.
# Prints each run's summary and the allreduce share rank 0 measured.
#
#   sudo scripts/mpi-two-hosts.sh TEXT_FILE [RATE]     e.g. ../shared/data/text/tinyshakespeare.txt 10gbit
#
# RATE (optional) shapes the link with tc's token bucket, e.g. 10gbit for 10 GbE. Needs root,
# iproute2 and Open MPI; removes the namespaces when it ends. Runs char-shakespeare (20 steps) and
# DCGAN 64 on Fashion-MNIST (30 steps), 1 thread per rank.
set -euo pipefail
text=${1:?usage: mpi-two-hosts.sh TEXT_FILE [RATE]}
rate=${2:-}
forge=$(readlink -f "${FORGE:-.build/release/forge}")
text=$(readlink -f "$text")

remove_namespaces() { ip netns del fa 2>/dev/null || true; ip netns del fb 2>/dev/null || true; }
remove_namespaces   # left over from a killed run
work=$(mktemp -d /tmp/forge-two-hosts.XXXXXX)
trap 'remove_namespaces; rm -rf "$work"' EXIT

ip netns add fa
ip netns add fb
ip link add va type veth peer name vb
ip link set va netns fa
ip link set vb netns fb
ip -n fa addr add 10.77.0.1/24 dev va
ip -n fb addr add 10.77.0.2/24 dev vb
for ns in fa fb; do ip -n $ns link set lo up; done
ip -n fa link set va up
ip -n fb link set vb up
if [ -n "$rate" ]; then
    ip netns exec fa tc qdisc add dev va root tbf rate "$rate" burst 4mb latency 50ms
    ip netns exec fb tc qdisc add dev vb root tbf rate "$rate" burst 4mb latency 50ms
fi

cat > "$work/agent" <<'EOF'
#!/bin/sh
# Open MPI's rsh agent: "host" 10.77.0.N is network namespace fa or fb of this machine
host=$1; shift
case "$host" in 10.77.0.1) ns=fa ;; 10.77.0.2) ns=fb ;; *) echo "agent: unknown host $host" >&2; exit 1 ;; esac
exec ip netns exec "$ns" sh -c "$*"
EOF
chmod +x "$work/agent"

run() {
    # --bind-to none: each "host" would bind its rank to core 0, and both hosts are this machine
    ip netns exec fa mpirun --allow-run-as-root -np 2 --host 10.77.0.1,10.77.0.2 --bind-to none \
        --mca plm_rsh_agent "$work/agent" --mca btl tcp,self \
        --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
        -x FORGE_THREADS=1 -x OMPI_MCA_mpi_yield_when_idle=1 ${FORGE_OVERLAP:+-x FORGE_OVERLAP} "$forge" "$@"
}

echo "== char-shakespeare, 2 hosts over veth${rate:+ shaped to $rate}"
run train char --data "$text" --preset shakespeare --steps 10 --warmup 2 --eval-iters 2 --log-every 5 --no-tensorboard --out "$work/char" \
    | grep -E "finished|allreduce|data parallel"
echo "== DCGAN 64, 2 hosts over veth${rate:+ shaped to $rate}"
run train gan --data /usr/share/datasets/fashion-mnist --size 64 --recipe dcgan --batch 64 --steps 30 --log-every 10 \
    --no-tensorboard --out "$work/gan" | grep -E "finished|allreduce|data parallel"
