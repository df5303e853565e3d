#!/usr/bin/env bash
# Stops the cluster started by up.sh and removes every trace of it: its processes (daemons,
# containerd shims, pod processes), mounts under the run directory, the network namespace
# with everything inside it (bridge, pod veths, kube-proxy/kubelet iptables rules), the
# host end of the veth and its routes, the pod cgroups, host paths the components created,
# the kernel settings the kubelet changed, and finally the run directory.
#
# Safe to run when nothing is up, twice in a row, or after a failed up.sh. Exits non-zero
# if something could not be removed (and says what).
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

need_root
check_run_dir

NETNS_FILE=/run/netns/$K8S_NETNS
DAEMONS=(kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver containerd etcd)

# Every live process of this cluster: those in its network namespace (all daemons and the
# containerd shims), those in the kubelet's pod cgroups (container processes), and, if the
# namespace is already gone, our daemons recognised by executable and run directory.
# Written with builtins only: it scans all of /proc several times per teardown.
our_pids() {
  local dir pid k v comm cg cmd have_ns=0
  [ -e "$NETNS_FILE" ] && have_ns=1
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [ "$pid" = "$$" ] && continue
    v=""
    while read -r k v _; do [ "$k" = "State:" ] && break; done 2>/dev/null <"$dir/status" || continue
    [ -n "$v" ] && [ "$v" != Z ] || continue
    if [ "$have_ns" = 1 ] && [ "$dir/ns/net" -ef "$NETNS_FILE" ]; then
      echo "$pid"
      continue
    fi
    cg=""
    IFS= read -r -d "" cg 2>/dev/null <"$dir/cgroup"
    if [[ "$cg" == *":/kubepods"* ]]; then
      echo "$pid"
      continue
    fi
    comm=""
    IFS= read -r comm 2>/dev/null <"$dir/comm" || continue
    case "$comm" in
      etcd | kube-* | kubelet | containerd* | runc | nsenter) ;;
      *) continue ;;
    esac
    cmd=""
    IFS= read -r -d '' cmd < <(tr '\0' ' ' <"$dir/cmdline" 2>/dev/null)
    [[ "$cmd" == *"$K8S_RUN/"* ]] && echo "$pid"
  done
}

stop_processes() {
  local name pid pids n signalled=()
  # Polite first, in dependency order, so nothing restarts what was just stopped.
  for name in "${DAEMONS[@]}"; do
    [ -f "$PIDS/$name.pid" ] || continue
    pid=$(cat "$PIDS/$name.pid")
    if kill -TERM "$pid" 2>/dev/null; then signalled+=("$pid"); fi
  done
  for n in $(seq 1 20); do
    pids=$(our_pids | tr '\n' ' ')
    [ -n "${pids// /}" ] || break
    # Container processes and shims are not worth waiting for; daemons get ~2 s.
    for pid in $pids; do
      if [ "$n" -gt 8 ] || grep -qs ':/kubepods' "/proc/$pid/cgroup" ||
        [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(command -v containerd-shim-runc-v2)" ]; then
        if kill -KILL "$pid" 2>/dev/null; then signalled+=("$pid"); fi
      fi
    done
    sleep 0.25
  done
  pids=$(our_pids | tr '\n' ' ')
  [ -z "${pids// /}" ] || { log "processes still alive: $pids"; FAILED=1; }
  log "signalled everything; waiting for the processes to be reaped"
  # The daemons were re-parented to PID 1 when up.sh exited, which reaps them a little
  # later; wait (briefly) until they are gone from the process table, not just dead.
  for n in $(seq 1 40); do
    pids=""
    for pid in "${signalled[@]}"; do [ -e "/proc/$pid" ] && pids+=" $pid"; done
    [ -n "$pids" ] || break
    sleep 0.125
  done
}

# Mount points at or under DIR, deepest/latest first (mountinfo escapes spaces as \040).
mounts_under() {
  awk -v d="$1" '{ m = $5; gsub(/\\040/, " ", m); if (m == d || index(m, d "/") == 1) print m }' \
    /proc/self/mountinfo | tac
}

unmount_all() {
  local m n
  for n in 1 2 3 4 5; do
    local left=0
    while IFS= read -r m; do
      [ -n "$m" ] || continue
      left=1
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done < <(mounts_under "$K8S_RUN")
    [ "$left" = 1 ] || return 0
  done
  if [ -n "$(mounts_under "$K8S_RUN")" ]; then
    log "mounts left under $K8S_RUN:"
    mounts_under "$K8S_RUN" >&2
    FAILED=1
  fi
}

remove_network() {
  if [ -e "$NETNS_FILE" ]; then
    ip netns del "$K8S_NETNS" 2>/dev/null || { umount "$NETNS_FILE" 2>/dev/null; rm -f "$NETNS_FILE"; }
  fi
  # The host end normally dies with the namespace (asynchronously); make sure.
  local n
  for n in $(seq 1 20); do
    ip link show "$K8S_HOST_VETH" >/dev/null 2>&1 || break
    ip link del "$K8S_HOST_VETH" 2>/dev/null || true
    sleep 0.1
  done
  if ip link show "$K8S_HOST_VETH" >/dev/null 2>&1; then
    log "could not remove $K8S_HOST_VETH"
    FAILED=1
  fi
  # Routes go with the link; remove any that were added by hand with another device.
  ip route del "$K8S_SERVICE_CIDR" 2>/dev/null || true
  ip route del "$K8S_POD_CIDR" 2>/dev/null || true
}

remove_cgroups() {
  local root n
  for root in /sys/fs/cgroup /sys/fs/cgroup/*; do
    [ -d "$root/kubepods" ] || continue
    for n in $(seq 1 20); do
      find "$root/kubepods" -depth -type d -exec rmdir {} + 2>/dev/null
      [ -d "$root/kubepods" ] || break
      sleep 0.2
    done
    if [ -d "$root/kubepods" ]; then
      log "could not remove cgroup $root/kubepods"
      FAILED=1
    fi
  done
}

restore_host() {
  local line p key
  if [ -f "$STATE/sysctl.orig" ]; then
    while IFS= read -r line; do
      [ -n "$line" ] && sysctl -qw "$line" >/dev/null 2>&1 || true
    done <"$STATE/sysctl.orig"
  fi
  # Paths the components created although told to use the run directory.
  if [ -f "$STATE/absent-paths" ]; then
    while IFS= read -r p; do
      if [ -n "$p" ] && { [ -e "$p" ] || [ -L "$p" ]; }; then
        log "removing $p (created by the cluster)"
        rm -rf --one-file-system "$p"
      fi
    done <"$STATE/absent-paths"
    for p in "${K8S_HOST_PATHS[@]}"; do
      key=$STATE/entries.$(echo "$p" | tr / _)
      [ -f "$key" ] && [ -d "$p" ] || continue
      ls -A "$p" | while IFS= read -r e; do
        grep -qxF -- "$e" "$key" || { log "removing $p/$e (created by the cluster)"; rm -rf --one-file-system "${p:?}/$e"; }
      done
    done
  fi
}

leftovers() {
  local out=""
  [ -z "$(our_pids)" ] || out+=" processes"
  [ ! -e "$NETNS_FILE" ] || out+=" netns"
  ! ip link show "$K8S_HOST_VETH" >/dev/null 2>&1 || out+=" veth"
  [ -z "$(mounts_under "$K8S_RUN")" ] || out+=" mounts"
  [ ! -e "$K8S_RUN" ] || out+=" run-dir"
  echo "$out"
}

main() {
  local t0=$SECONDS
  FAILED=0
  exec 9<"$HERE"
  flock -w 300 9 || die "timed out waiting for another up.sh/down.sh"
  if [ ! -e "$K8S_RUN" ] && [ ! -e "$NETNS_FILE" ] && ! ip link show "$K8S_HOST_VETH" >/dev/null 2>&1 &&
    [ -z "$(our_pids)" ]; then
    log "nothing to tear down"
    exit 0
  fi
  log "stopping processes"
  stop_processes
  log "unmounting and removing the network namespace"
  unmount_all
  remove_network
  remove_cgroups
  restore_host
  if [ "$FAILED" = 0 ] && [ -z "$(mounts_under "$K8S_RUN")" ]; then
    rm -rf --one-file-system "$K8S_RUN"
  else
    log "keeping $K8S_RUN because something could not be cleaned up"
  fi
  local left
  left=$(leftovers)
  if [ -n "$left" ]; then
    log "teardown incomplete, left:$left"
    exit 1
  fi
  log "down in $((SECONDS - t0))s; nothing left"
}

main "$@"
