#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages the test suite starts for real: a private PostgreSQL
# server (the fixture runs initdb/pg_ctl in a temp dir; no system service is used), and wrk
# for the load tests and benchmarks; redis-server for the shared output cache; podman,
# buildah and debootstrap to build and run images (debootstrap makes the local base);
# prometheus (and promtool) and chromium for the monitoring tests.
set -euo pipefail

packages=(postgresql redis-server git wrk podman buildah skopeo runc fuse-overlayfs slirp4netns uidmap debootstrap binutils
  prometheus chromium chromium-driver)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# podman/buildah configuration these hosts need (runc, cgroupfs, one storage config)
$SUDO "$(dirname "$0")/podman-setup.sh"
