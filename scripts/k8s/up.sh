#!/usr/bin/env bash
# Starts a real single-node Kubernetes 1.20 cluster on this machine for end-to-end tests:
# etcd, kube-apiserver (bearer tokens, TLS from a throwaway CA), kube-controller-manager,
# kube-scheduler, a private containerd, the kubelet and kube-proxy (iptables mode).
#
#   scripts/k8s/build.sh && scripts/k8s/up.sh     # prints the kubeconfig path on stdout
#   scripts/k8s/down.sh                            # removes every trace again
#
# Everything runs inside the private network namespace $K8S_NETNS, reachable from the host
# over a veth pair: the API server is https://$K8S_NODE_IP:$K8S_APISERVER_PORT, and the
# service and pod ranges are routed into the namespace, so ClusterIPs work from the host.
# State, logs and configs live under ${K8S_RUN:-/tmp/modelfleet-k8s}; the kubeconfig for
# clients (server URL, CA, admin bearer token) is $K8S_RUN/kubeconfig.
#
# If up.sh fails it prints the tail of every log and tears down what it started, unless
# K8S_KEEP_ON_FAILURE=1 (then run down.sh yourself after looking).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

need_root
check_run_dir

API_URL="https://$K8S_NODE_IP:$K8S_APISERVER_PORT"
K8S_WAIT_TIMEOUT=${K8S_WAIT_TIMEOUT:-180}

preflight() {
  local b
  for b in "${K8S_COMPONENTS[@]}" pause; do
    [ -x "$K8S_BIN/$b" ] || die "$K8S_BIN/$b missing: run scripts/k8s/build.sh first"
  done
  [ -f "$K8S_CACHE/images/pause.oci.tar" ] || die "pause image missing: run scripts/k8s/build.sh"
  for b in etcd containerd containerd-shim-runc-v2 ctr runc iptables ip nsenter openssl curl jq conntrack; do
    command -v "$b" >/dev/null || die "$b not found: run scripts/k8s/build.sh (installs it)"
  done
  for b in bridge host-local loopback portmap; do
    [ -x "$K8S_CNI_BIN_DIR/$b" ] || die "CNI plugin $K8S_CNI_BIN_DIR/$b missing (containernetworking-plugins)"
  done
}

# The cluster's address ranges must not already be in use on the host (override K8S_HOST_IP,
# K8S_NODE_IP, K8S_SERVICE_CIDR, K8S_POD_CIDR if they are).
check_addresses() {
  local cidr
  for cidr in "$K8S_HOST_IP/$K8S_LINK_PREFIX" "$K8S_SERVICE_CIDR" "$K8S_POD_CIDR"; do
    if [ -n "$(ip -4 route show to match "${cidr%/*}" | grep -v '^default')" ] ||
      [ -n "$(ip -4 route show root "$cidr")" ]; then
      die "$cidr overlaps a route on this host: $(ip -4 route show to match "${cidr%/*}" | grep -v '^default' | head -n1)"
    fi
  done
}

# A cluster that is already up and healthy is reused; leftovers of a dead one are removed.
existing_cluster() {
  if [ -f "$K8S_RUN/kubeconfig" ] && [ -f "$PKI/admin.token" ] &&
    curl -sf --max-time 3 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(cat "$PKI/admin.token")" \
      "$API_URL/readyz" >/dev/null 2>&1; then
    log "cluster already up"
    echo "$K8S_RUN/kubeconfig"
    exit 0
  fi
  if [ -e "$K8S_RUN" ] || [ -e "/run/netns/$K8S_NETNS" ] || ip link show "$K8S_HOST_VETH" >/dev/null 2>&1; then
    log "found leftovers of an earlier cluster; cleaning up first"
    "$HERE/down.sh"
  fi
}

# What the cluster may change on the host and down.sh must put back.
snapshot_host() {
  mkdir -p "$STATE"
  local s p
  : >"$STATE/sysctl.orig"
  for s in "${K8S_HOST_SYSCTLS[@]}"; do
    if v=$(sysctl -n "$s" 2>/dev/null); then echo "$s=$v" >>"$STATE/sysctl.orig"; fi
  done
  : >"$STATE/absent-paths"
  for p in "${K8S_HOST_PATHS[@]}"; do
    if [ -e "$p" ] || [ -L "$p" ]; then
      if [ -d "$p" ]; then ls -A "$p" >"$STATE/entries.$(echo "$p" | tr / _)"; fi
    else
      echo "$p" >>"$STATE/absent-paths"
    fi
  done
}

setup_network() {
  log "network: namespace $K8S_NETNS, node IP $K8S_NODE_IP, services $K8S_SERVICE_CIDR, pods $K8S_POD_CIDR"
  ip netns add "$K8S_NETNS"
  ip link add "$K8S_HOST_VETH" type veth peer name "$K8S_NS_VETH"
  ip link set "$K8S_NS_VETH" netns "$K8S_NETNS"
  ip addr add "$K8S_HOST_IP/$K8S_LINK_PREFIX" dev "$K8S_HOST_VETH"
  ip link set "$K8S_HOST_VETH" up
  in_ns ip link set lo up
  in_ns ip addr add "$K8S_NODE_IP/$K8S_LINK_PREFIX" dev "$K8S_NS_VETH"
  in_ns ip link set "$K8S_NS_VETH" up
  # Service and pod ranges are reached through the namespace; nothing in them leaves the host.
  ip route add "$K8S_SERVICE_CIDR" via "$K8S_NODE_IP" dev "$K8S_HOST_VETH"
  ip route add "$K8S_POD_CIDR" via "$K8S_NODE_IP" dev "$K8S_HOST_VETH"
  # Inside: forward between the veth and the pod bridge, and let bridged traffic see
  # iptables (a pod reaching its own service). The namespace has no default route: pods
  # and components can reach the host's end of the link and each other, nothing beyond.
  in_ns sysctl -qw net.ipv4.ip_forward=1
  # (Per namespace on current kernels; only written when needed in case it is global.)
  if [ "$(in_ns sysctl -n net.bridge.bridge-nf-call-iptables 2>/dev/null)" != 1 ]; then
    in_ns sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
  fi
}

gen_pki() {
  log "generating CA, certificates, service-account keys and tokens"
  mkdir -p "$PKI"
  (
    cd "$PKI"
    umask 077
    new_key ca.key
    openssl req -x509 -new -key ca.key -sha256 -days 30 -subj "/CN=modelfleet-k8s-ca" -out ca.crt \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -addext "subjectKeyIdentifier=hash"
    sign_cert apiserver "/CN=kube-apiserver" serverAuth \
      "IP:$K8S_NODE_IP,IP:$K8S_SERVICE_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    sign_cert kubelet "/CN=$K8S_NODE_NAME" serverAuth "IP:$K8S_NODE_IP,DNS:$K8S_NODE_NAME"
    sign_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth ""
    new_key sa.key
    openssl pkey -in sa.key -pubout -out sa.pub
    local t
    for t in admin controller-manager scheduler kubelet kube-proxy; do
      openssl rand -hex 32 >"$t.token"
    done
    {
      echo "$(cat admin.token),modelfleet-admin,modelfleet-admin,\"system:masters\""
      echo "$(cat controller-manager.token),system:kube-controller-manager,system:kube-controller-manager"
      echo "$(cat scheduler.token),system:kube-scheduler,system:kube-scheduler"
      echo "$(cat kubelet.token),system:node:$K8S_NODE_NAME,system:node:$K8S_NODE_NAME,\"system:nodes\""
      echo "$(cat kube-proxy.token),system:kube-proxy,system:kube-proxy"
    } >tokens.csv
    chmod 644 ca.crt
  )
}

# ECDSA P-256 keys: as good as RSA here and much faster to generate (up.sh makes five).
new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# sign_cert NAME SUBJECT EXTENDED_KEY_USAGE SUBJECT_ALT_NAMES  (run inside $PKI)
sign_cert() {
  local name=$1 subj=$2 eku=$3 sans=$4
  new_key "$name.key"
  openssl req -new -key "$name.key" -subj "$subj" -out "$name.csr"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$eku"
    echo "subjectKeyIdentifier=hash"
    echo "authorityKeyIdentifier=keyid,issuer"
    [ -z "$sans" ] || echo "subjectAltName=$sans"
  } >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
    -sha256 -days 30 -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

# write_kubeconfig FILE USER TOKEN [embed]: token kubeconfig; "embed" inlines the CA.
write_kubeconfig() {
  local file=$1 user=$2 token=$3 embed=${4:-} ca_line
  if [ "$embed" = embed ]; then
    ca_line="certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")"
  else
    ca_line="certificate-authority: $PKI/ca.crt"
  fi
  umask 077
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: modelfleet
  cluster:
    server: $API_URL
    $ca_line
users:
- name: $user
  user:
    token: $token
contexts:
- name: modelfleet
  context:
    cluster: modelfleet
    user: $user
current-context: modelfleet
EOF
  umask 022
}

write_configs() {
  mkdir -p "$K8S_RUN/kubeconfigs" "$K8S_RUN/cni/net.d" "$K8S_RUN/cni/ipam" "$CTRD_DIR" "$K8S_RUN/kubelet"
  local c
  for c in controller-manager scheduler kubelet kube-proxy; do
    write_kubeconfig "$K8S_RUN/kubeconfigs/$c.kubeconfig" "$c" "$(cat "$PKI/$c.token")"
  done

  cat >"$CTRD_DIR/config.toml" <<EOF
version = 2
root = "$CTRD_DIR/root"
state = "$CTRD_DIR/state"
# /opt/containerd and unused snapshotters would otherwise be created on the host.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CTRD_SOCK"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$K8S_PAUSE_IMAGE"
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # This VM withholds CAP_SYS_RESOURCE even from root, so nothing may lower its OOM score:
  # runc fails on the kubelet's -998 for pod sandboxes ("can't get final child's PID from
  # pipe"). Clamp container OOM scores to containerd's own instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
        Root = "$CTRD_DIR/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$K8S_CNI_BIN_DIR"
    conf_dir = "$K8S_RUN/cni/net.d"
    max_conf_num = 1
EOF

  cat >"$K8S_RUN/cni/net.d/10-$K8S_CNI_NAME.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$K8S_CNI_NAME",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$K8S_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$K8S_RUN/cni/ipam",
        "ranges": [[{"subnet": "$K8S_POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

  cat >"$K8S_RUN/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $K8S_NODE_IP
port: $K8S_KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $K8S_KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $PKI/ca.crt
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
failSwapOn: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
# Never garbage-collect images: the test images are imported by hand and cannot be pulled.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
nodeStatusUpdateFrequency: 4s
EOF
}

# start NAME CMD...: runs CMD in the cluster namespace, detached, logging to $LOGS/NAME.log.
start() {
  local name=$1
  shift
  mkdir -p "$LOGS" "$PIDS"
  setsid nsenter --net="/run/netns/$K8S_NETNS" -- "$@" >"$LOGS/$name.log" 2>&1 </dev/null 9<&- &
  echo $! >"$PIDS/$name.pid"
  STARTED+=("$name")
}

check_alive() {
  local name pid
  for name in "${STARTED[@]}"; do
    pid=$(cat "$PIDS/$name.pid")
    if ! kill -0 "$pid" 2>/dev/null; then
      die "$name exited early; see $LOGS/$name.log"
    fi
  done
}

# wait_for DESCRIPTION COMMAND...: polls until COMMAND succeeds (or a component dies).
wait_for() {
  local what=$1 end=$((SECONDS + K8S_WAIT_TIMEOUT))
  shift
  until "$@" >/dev/null 2>&1; do
    check_alive
    [ "$SECONDS" -lt "$end" ] || die "timed out after ${K8S_WAIT_TIMEOUT}s waiting for $what"
    sleep 0.25
  done
}

api() {
  curl -sf --max-time 5 --cacert "$PKI/ca.crt" -H "Authorization: Bearer $ADMIN_TOKEN" "$API_URL$1"
}

node_ready() {
  api "/api/v1/nodes/$K8S_NODE_NAME" |
    jq -e '.status.conditions[] | select(.type == "Ready") | .status == "True"' | grep -qx true
}

start_etcd() {
  log "starting etcd"
  start etcd etcd --name modelfleet --data-dir "$K8S_RUN/etcd" \
    --listen-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$K8S_ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$K8S_ETCD_PEER_PORT" \
    --initial-cluster "modelfleet=http://127.0.0.1:$K8S_ETCD_PEER_PORT" --initial-cluster-state new \
    --logger zap --log-level warn
}

start_apiserver() {
  log "starting kube-apiserver on $API_URL"
  start kube-apiserver "$K8S_BIN/kube-apiserver" \
    --advertise-address="$K8S_NODE_IP" --bind-address="$K8S_NODE_IP" --secure-port="$K8S_APISERVER_PORT" \
    --insecure-port=0 --cert-dir="$K8S_RUN/apiserver" \
    --etcd-servers="http://127.0.0.1:$K8S_ETCD_PORT" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" --token-auth-file="$PKI/tokens.csv" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --service-cluster-ip-range="$K8S_SERVICE_CIDR" \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --allow-privileged=true --profiling=false --v=1
}

# The controller manager gives up if the API server is not healthy soon after it starts,
# so these two are started only once it is.
start_controllers() {
  log "starting kube-controller-manager and kube-scheduler"
  local kc=$K8S_RUN/kubeconfigs
  start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig="$kc/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$kc/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$kc/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$K8S_CM_PORT" --port=0 --cert-dir="$K8S_RUN/controller-manager" \
    --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --service-cluster-ip-range="$K8S_SERVICE_CIDR" --cluster-cidr="$K8S_POD_CIDR" --allocate-node-cidrs=false \
    --flex-volume-plugin-dir="$K8S_RUN/controller-manager/volume-plugins" \
    --profiling=false --v=1
  start kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig="$kc/scheduler.kubeconfig" \
    --authentication-kubeconfig="$kc/scheduler.kubeconfig" \
    --authorization-kubeconfig="$kc/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$K8S_SCHED_PORT" --port=0 --cert-dir="$K8S_RUN/scheduler" \
    --leader-elect=false --profiling=false --v=1
}

start_containerd() {
  log "starting containerd (socket $CTRD_SOCK)"
  start containerd containerd --config "$CTRD_DIR/config.toml"
}

# The kubelet and kube-proxy retry until the API server answers, so they start while it is
# still coming up: the kubelet spends ~5 s initialising first (cAdvisor probes for a Docker
# daemon five times, a second apart, and no flag skips that).
start_node_agents() {
  log "starting kubelet (node $K8S_NODE_NAME) and kube-proxy"
  start kubelet "$K8S_BIN/kubelet" \
    --config="$K8S_RUN/kubelet-config.yaml" \
    --kubeconfig="$K8S_RUN/kubeconfigs/kubelet.kubeconfig" \
    --root-dir="$K8S_RUN/kubelet" --cert-dir="$K8S_RUN/kubelet/pki" \
    --volume-plugin-dir="$K8S_RUN/kubelet/volume-plugins" --seccomp-profile-root="$K8S_RUN/kubelet/seccomp" \
    --container-runtime=remote --container-runtime-endpoint="unix://$CTRD_SOCK" \
    --runtime-request-timeout=5m --pod-infra-container-image="$K8S_PAUSE_IMAGE" \
    --node-ip="$K8S_NODE_IP" --hostname-override="$K8S_NODE_NAME" --oom-score-adj=0 --v="${K8S_KUBELET_V:-1}"
  start kube-proxy "$K8S_BIN/kube-proxy" \
    --kubeconfig="$K8S_RUN/kubeconfigs/kube-proxy.kubeconfig" \
    --proxy-mode=iptables --hostname-override="$K8S_NODE_NAME" --bind-address="$K8S_NODE_IP" \
    --cluster-cidr="$K8S_POD_CIDR" --nodeport-addresses="$K8S_NODE_IP/32" \
    --healthz-bind-address="127.0.0.1:$K8S_PROXY_HEALTHZ_PORT" \
    --metrics-bind-address="127.0.0.1:$K8S_PROXY_METRICS_PORT" \
    --conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0s \
    --conntrack-tcp-timeout-close-wait=0s --oom-score-adj=0 --profiling=false --v=1
}

on_exit() {
  local rc=$?
  [ "$rc" -ne 0 ] || return 0
  log "up.sh failed (exit $rc); last log lines:"
  local f
  for f in "$LOGS"/*.log; do
    [ -f "$f" ] || continue
    echo "----- $f" >&2
    tail -n 25 "$f" >&2
  done
  if [ -z "${K8S_KEEP_ON_FAILURE:-}" ]; then
    log "tearing down (set K8S_KEEP_ON_FAILURE=1 to keep it for inspection)"
    exec 9<&-
    "$HERE/down.sh" >&2 || true
  fi
}

main() {
  local t0=$SECONDS
  STARTED=()
  preflight
  existing_cluster
  check_addresses
  exec 9<"$HERE"
  flock -n 9 || die "another up.sh/down.sh is running"
  trap on_exit EXIT
  mkdir -p "$K8S_RUN" "$LOGS" "$PIDS"
  chmod 755 "$K8S_RUN"
  snapshot_host
  setup_network
  # Started in an order that overlaps the slow parts (API server start-up, kubelet init).
  start_etcd
  gen_pki
  ADMIN_TOKEN=$(cat "$PKI/admin.token")
  write_configs
  start_containerd
  wait_for "etcd" in_ns curl -sf --max-time 2 "http://127.0.0.1:$K8S_ETCD_PORT/health"
  start_apiserver
  wait_for "containerd" ctr_k8s version
  ctr_k8s images import "$K8S_CACHE/images/pause.oci.tar" >/dev/null
  start_node_agents
  wait_for "kube-apiserver /readyz" api /readyz
  start_controllers
  wait_for "node $K8S_NODE_NAME to be Ready" node_ready
  wait_for "service account default/default" api /api/v1/namespaces/default/serviceaccounts/default
  write_kubeconfig "$K8S_RUN/kubeconfig" modelfleet-admin "$ADMIN_TOKEN" embed
  chmod 600 "$K8S_RUN/kubeconfig"
  log "cluster up in $((SECONDS - t0))s: $API_URL ($(api /version | jq -r .gitVersion)), logs in $LOGS"
  echo "$K8S_RUN/kubeconfig"
}

main "$@"
