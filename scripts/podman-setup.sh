#!/usr/bin/env bash
# Makes rootful podman/buildah work on hosts like the build machines: runc instead of crun
# (crun fails on hybrid cgroups), cgroupfs, file events, ulimits the host allows, and one
# storage configuration (mixing --root flags with a storage.conf makes every run slow).
# Existing files are left alone unless they are ours (marked) or --force is given.
set -euo pipefail

MARK="# written by modelfleet scripts/podman-setup.sh"
conf=/etc/containers/containers.conf
storage=/etc/containers/storage.conf
force=${1:-}

write() {
  local path=$1 content=$2
  if [ -f "$path" ] && ! grep -q "$MARK" "$path" && [ "$force" != "--force" ]; then
    echo "keeping existing $path (pass --force to replace it)"
    return
  fi
  mkdir -p "$(dirname "$path")"
  printf '%s\n%s\n' "$MARK" "$content" > "$path"
  echo "wrote $path"
}

write "$conf" '[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"'

driver=overlay
if ! grep -q overlay /proc/filesystems 2>/dev/null; then driver=vfs; fi
write "$storage" "[storage]
driver = \"$driver\"
runroot = \"/run/containers/storage\"
graphroot = \"/var/lib/containers/storage\""
