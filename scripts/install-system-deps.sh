#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages the test suite starts for real: a private PostgreSQL
# server (the fixture runs initdb/pg_ctl in a temp dir; no system service is used), and wrk
# for the load tests and benchmarks; redis-server for the shared output cache.
set -euo pipefail

packages=(postgresql redis-server git wrk)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing system packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
