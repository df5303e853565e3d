# shellcheck shell=bash disable=SC2034
# Shared settings and helpers for scripts/k8s/*.sh (sourced, not run).
#
# Everything the cluster runs lives in one private network namespace ($K8S_NETNS): etcd, the
# control plane, containerd, the kubelet, kube-proxy and the pod bridge. The host only gets a
# veth pair into it plus two routes, so kube-proxy's and the kubelet's iptables rules, the
# bridge and the pod veths never touch the host's own network stack, and teardown is mostly
# "delete the namespace".

K8S_CACHE=${K8S_CACHE:-/var/cache/modelfleet-k8s}
K8S_BIN=${K8S_BIN:-$K8S_CACHE/bin}
K8S_RUN=${K8S_RUN:-/tmp/modelfleet-k8s}

# Network layout (all of it private to this machine; nothing is routed off the host).
K8S_NETNS=${K8S_NETNS:-modelfleet-k8s}
K8S_HOST_VETH=${K8S_HOST_VETH:-mfk8s-host}     # host end of the link into the namespace
K8S_NS_VETH=${K8S_NS_VETH:-mfk8s-node}         # namespace end; carries the node IP
K8S_HOST_IP=${K8S_HOST_IP:-10.213.0.1}          # host side of the /30 link
K8S_NODE_IP=${K8S_NODE_IP:-10.213.0.2}          # node IP (API server, kubelet, NodePorts)
K8S_LINK_PREFIX=${K8S_LINK_PREFIX:-30}
K8S_SERVICE_CIDR=${K8S_SERVICE_CIDR:-10.213.16.0/24}
K8S_SERVICE_IP=${K8S_SERVICE_IP:-10.213.16.1}   # first IP of the service range (kubernetes svc)
K8S_POD_CIDR=${K8S_POD_CIDR:-10.213.32.0/24}
K8S_BRIDGE=${K8S_BRIDGE:-mfk8sbr0}
K8S_CNI_NAME=${K8S_CNI_NAME:-modelfleet-k8s}
K8S_NODE_NAME=${K8S_NODE_NAME:-modelfleet-node}

# Ports. They are bound inside the private namespace, so they cannot clash with anything the
# host runs; the defaults are the usual Kubernetes ones.
K8S_APISERVER_PORT=${K8S_APISERVER_PORT:-6443}
K8S_ETCD_PORT=${K8S_ETCD_PORT:-2379}
K8S_ETCD_PEER_PORT=${K8S_ETCD_PEER_PORT:-2380}
K8S_KUBELET_PORT=${K8S_KUBELET_PORT:-10250}
K8S_KUBELET_HEALTHZ_PORT=${K8S_KUBELET_HEALTHZ_PORT:-10248}
K8S_PROXY_HEALTHZ_PORT=${K8S_PROXY_HEALTHZ_PORT:-10256}
K8S_PROXY_METRICS_PORT=${K8S_PROXY_METRICS_PORT:-10249}
K8S_CM_PORT=${K8S_CM_PORT:-10257}
K8S_SCHED_PORT=${K8S_SCHED_PORT:-10259}

K8S_PAUSE_IMAGE=${K8S_PAUSE_IMAGE:-localhost/modelfleet-k8s/pause:3.4}
K8S_CNI_BIN_DIR=${K8S_CNI_BIN_DIR:-/usr/lib/cni}

# Binaries we build; kubectl is a convenience nothing depends on.
K8S_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

# Derived paths.
CTRD_DIR=$K8S_RUN/containerd
CTRD_SOCK=$CTRD_DIR/containerd.sock
PKI=$K8S_RUN/pki
LOGS=$K8S_RUN/logs
PIDS=$K8S_RUN/pids
STATE=$K8S_RUN/state

# Kernel settings the kubelet (kernel.*, vm.*) rewrites on the host; saved by up.sh and put
# back by down.sh. Network sysctls are per namespace and vanish with it.
K8S_HOST_SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

# Host paths the kubelet, containerd or the CNI plugins create outside the run directory
# (hard-coded in them). up.sh records which existed; down.sh removes what the cluster added.
K8S_HOST_PATHS=(/run/containerd /var/lib/cni /var/log/pods /var/log/containers /run/xtables.lock
  /var/lib/kubelet /usr/libexec/kubernetes /etc/kubernetes /var/run/kubernetes /opt/containerd /opt/cni
  /etc/cni)

log() { printf '[k8s %s] %s\n' "$(date +%H:%M:%S.%1N)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_root() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (creates network namespaces, mounts, cgroups)"
}

# Run a command inside the cluster's network namespace (network only: the mount namespace,
# cgroups and /sys stay the host's, which the kubelet and containerd need to share).
# down.sh deletes $K8S_RUN recursively: refuse anything but a dedicated directory.
check_run_dir() {
  case "$K8S_RUN" in
    /*/*) ;;
    *) die "K8S_RUN must be an absolute path at least two levels deep (got '$K8S_RUN')" ;;
  esac
  case "$K8S_RUN" in
    *//* | */./* | */../* | */. | */.. | */) die "K8S_RUN must be a normalised path (got '$K8S_RUN')" ;;
  esac
  case "$K8S_RUN" in
    /usr/* | /etc/* | /bin/* | /sbin/* | /lib*/* | /boot/* | /proc/* | /sys/* | /dev/*)
      die "refusing K8S_RUN=$K8S_RUN under a system directory" ;;
  esac
}

in_ns() { nsenter --net="/run/netns/$K8S_NETNS" -- "$@"; }

ctr_k8s() { "$(command -v ctr)" --address "$CTRD_SOCK" --namespace k8s.io "$@"; }
