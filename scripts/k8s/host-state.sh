#!/usr/bin/env bash
# Prints the parts of the host's state that up.sh/down.sh could affect, in a stable form, so
# a teardown can be checked by diffing a capture taken before up.sh with one after down.sh:
#
#   scripts/k8s/host-state.sh >/tmp/before; scripts/k8s/up.sh; scripts/k8s/down.sh
#   scripts/k8s/host-state.sh >/tmp/after; diff /tmp/before /tmp/after && echo clean
#
# Unrelated activity on the host (podman containers coming and going) shows up too.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

section() { printf '\n## %s\n' "$1"; }

section "links"
ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print $2}' | sort
section "IPv4 addresses"
ip -o -4 addr show | awk '{print $2, $4}' | sort
section "routes"
ip route show | sort
section "network namespaces"
ip netns list | sort
section "iptables (counters stripped)"
iptables-save 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
section "ip6tables (counters stripped)"
ip6tables-save 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
section "nftables tables"
nft list tables 2>/dev/null | sort
section "mounts under $K8S_RUN, kubelet, netns or containerd paths"
awk '{print $5}' /proc/self/mountinfo | grep -E "^$K8S_RUN|kubelet|/run/netns/|containerd" | sort
section "cluster processes (etcd, kube-*, containerd, shims)"
ps -eo comm= | grep -E '^(etcd|kube-|kubelet|containerd|pause$)' | sort | uniq -c
section "kubepods cgroups"
ls -d /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods 2>/dev/null
section "kernel settings the kubelet changes"
for s in "${K8S_HOST_SYSCTLS[@]}" net.ipv4.ip_forward net.ipv4.conf.all.route_localnet \
  net.bridge.bridge-nf-call-iptables net.netfilter.nf_conntrack_max; do
  echo "$s = $(sysctl -n "$s" 2>/dev/null)"
done
section "host paths components create"
for p in "${K8S_HOST_PATHS[@]}"; do
  if [ -d "$p" ]; then echo "$p/ ($(ls -A "$p" | wc -l) entries)"; elif [ -e "$p" ]; then echo "$p"; fi
done
section "run directory"
[ -e "$K8S_RUN" ] && echo "$K8S_RUN exists" || echo "$K8S_RUN absent"
