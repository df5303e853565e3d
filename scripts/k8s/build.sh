#!/usr/bin/env bash
# Installs what a local single-node Kubernetes needs from Debian and builds the Kubernetes
# binaries from Debian's own `kubernetes` source package (no prebuilt binary can be fetched
# here). Idempotent: packages already installed and binaries already built are left alone.
#
#   scripts/k8s/build.sh            # binaries go to ${K8S_CACHE:-/var/cache/modelfleet-k8s}/bin
#   K8S_REBUILD=1 scripts/k8s/build.sh   # rebuild even if the binaries exist
#   K8S_KEEP_BUILD=1 ...            # keep the unpacked source tree and Go build cache
#
# The host's apt configuration is not touched: the source package is fetched through a
# private sources file, lists directory and cache under $K8S_CACHE/apt.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

need_root

PACKAGES=(golang-go etcd-server containerd runc containernetworking-plugins iptables iproute2
  conntrack socat rsync openssl curl jq perl make gcc libc6-dev dpkg-dev util-linux procps tar)

install_packages() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    log "Debian packages already installed"
    return
  fi
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # The etcd-server and containerd packages ship services; this cluster runs its own private
  # instances, so keep the package scripts from starting system-wide ones.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
  fi
  local rc=0
  { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } || rc=$?
  [ "$made_policy" = 1 ] && rm -f "$policy"
  [ "$rc" = 0 ] || die "apt-get failed ($rc)"
  # Belt and braces for hosts with systemd: make sure no packaged daemon stayed up.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now etcd.service containerd.service >/dev/null 2>&1 || true
  fi
}

# Where the host's apt already gets Debian from, so the source fetch uses the same mirror.
debian_mirror() {
  local uri
  uri=$(apt-cache policy 2>/dev/null | awk '$2 ~ /^https?:\/\/.*\/debian\/?$/ && $3 ~ /\/main$/ {print $2; exit}')
  echo "${uri:-http://deb.debian.org/debian}"
}

fetch_source() {
  local aptdir=$K8S_CACHE/apt srcdir=$K8S_CACHE/source
  local codename mirror
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  mirror=$(debian_mirror)
  mkdir -p "$aptdir/sources.list.d" "$aptdir/lists/partial" "$aptdir/cache/archives/partial" "$srcdir"
  cat >"$aptdir/sources.list.d/modelfleet-k8s-src.sources" <<EOF
Types: deb-src
URIs: $mirror
Suites: $codename
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  local opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$aptdir/sources.list.d"
    -o "Dir::State::Lists=$aptdir/lists" -o "Dir::Cache=$aptdir/cache"
    -o "Dir::Cache::archives=$aptdir/cache/archives" -o "APT::Sandbox::User=root")
  if ! ls "$srcdir"/kubernetes_*.dsc >/dev/null 2>&1; then
    log "fetching Debian's kubernetes source package from $mirror ($codename)"
    apt-get "${opts[@]}" -q update
    (cd "$srcdir" && apt-get "${opts[@]}" -q source --download-only kubernetes)
  else
    log "kubernetes source package already downloaded"
  fi
  DSC=$(ls "$srcdir"/kubernetes_*.dsc | sort -V | tail -n1)
}

unpack_source() {
  TREE=$K8S_CACHE/build/kubernetes
  if [ -f "$TREE/.modelfleet-unpacked" ] && [ "$(cat "$TREE/.modelfleet-unpacked")" = "$(basename "$DSC")" ]; then
    return
  fi
  rm -rf "$TREE"
  mkdir -p "$(dirname "$TREE")"
  log "unpacking $(basename "$DSC") (applies Debian's patches)"
  dpkg-source -x "$DSC" "$TREE" >/dev/null
  basename "$DSC" >"$TREE/.modelfleet-unpacked"
}

# Kubernetes 1.20 vendors github.com/modern-go/reflect2 v1.0.1, which declares
# reflect.mapiterinit with its pre-Go-1.18 signature (returning an iterator) and a two-field
# stand-in for the iterator struct. Built with Debian's Go 1.19, every JSON encoding of a map
# then lets the runtime write a 96-byte iterator into a 16-byte allocation: the API server
# dies with SIGSEGV in aeshashbody/mapiternext within seconds. Rewrite the declaration to
# the Go >= 1.18 form (caller allocates the iterator, with the runtime's full layout).
patch_reflect2() {
  local dir=$TREE/vendor/github.com/modern-go/reflect2 minor
  minor=$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
  [ -n "$minor" ] && [ "$minor" -ge 18 ] || return 0
  grep -q 'modelfleet: go1.18 iterator' "$dir/unsafe_link.go" && return 0
  log "patching vendored reflect2 for Go 1.$minor map iteration"
  perl -0pi -e '
    s{func mapiterinit\(rtype unsafe\.Pointer, m unsafe\.Pointer\) \*hiter}
     {func mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer, it *hiter)} or die "mapiterinit not found\n";
    s{type hiter struct \{.*?\n\}\n}{type hiter struct {
	// modelfleet: go1.18 iterator layout (mirrors reflect.hiter / runtime.hiter; the
	// runtime fills in all of it, so it must be this size and keep its pointers visible).
	key         unsafe.Pointer
	value       unsafe.Pointer
	t           unsafe.Pointer
	h           unsafe.Pointer
	buckets     unsafe.Pointer
	bptr        unsafe.Pointer
	overflow    *[]unsafe.Pointer
	oldoverflow *[]unsafe.Pointer
	startBucket uintptr
	offset      uint8
	wrapped     bool
	B           uint8
	i           uint8
	bucket      uintptr
	checkBucket uintptr
}

// startMapIter allocates an iterator and lets the runtime initialise it in place.
func startMapIter(rtype unsafe.Pointer, m unsafe.Pointer) *hiter {
	it := new(hiter)
	mapiterinit(rtype, m, it)
	return it
}
}s or die "hiter not found\n";
  ' "$dir/unsafe_link.go"
  perl -0pi -e '
    s{hiter:(\s+)mapiterinit\(type2\.rtype, }{hiter:$1startMapIter(type2.rtype, } or die "UnsafeIterate not found\n";
  ' "$dir/unsafe_map.go"
}

have_binaries() {
  local b
  for b in "${K8S_COMPONENTS[@]}" pause; do
    [ -x "$K8S_BIN/$b" ] || return 1
  done
  [ -f "$K8S_CACHE/images/pause.oci.tar" ] || return 1
}

build_binaries() {
  local what=() b
  for b in "${K8S_COMPONENTS[@]}" kubectl; do what+=("cmd/$b"); done
  log "building ${what[*]} (takes several minutes on a cold cache)"
  (
    cd "$TREE"
    # Kubernetes 1.20 builds in GOPATH mode from its vendor/ tree, with its own GOPATH and
    # Go cache under _output/; nothing may be fetched from the network.
    export GOPROXY=off GOFLAGS=
    export HOME=$K8S_CACHE/build/home
    mkdir -p "$HOME"
    make WHAT="${what[*]}"
  )
  mkdir -p "$K8S_BIN"
  for b in "${K8S_COMPONENTS[@]}"; do
    install -m 755 "$TREE/_output/bin/$b" "$K8S_BIN/$b"
  done
  if [ -x "$TREE/_output/bin/kubectl" ]; then
    install -m 755 "$TREE/_output/bin/kubectl" "$K8S_BIN/kubectl"
  fi
}

# The pod sandbox ("pause") image normally comes from a registry; build it from the same
# source tree (build/pause/linux/pause.c) and wrap it in an OCI image archive that up.sh
# imports into containerd.
build_pause() {
  local version
  version=$(sed -n 's/^TAG *= *//p' "$TREE/build/pause/Makefile" | head -n1)
  gcc -Os -Wall -static -DVERSION="v${version:-3.4}-modelfleet" -o "$K8S_BIN/pause" "$TREE/build/pause/linux/pause.c"
  strip "$K8S_BIN/pause" 2>/dev/null || true
  make_pause_oci "$K8S_BIN/pause" "$K8S_CACHE/images/pause.oci.tar"
}

# Writes a one-layer OCI image archive holding /pause. Only sha256sum, tar and printf.
make_pause_oci() {
  local bin=$1 out=$2 work
  work=$(mktemp -d)
  mkdir -p "$work/rootfs" "$work/oci/blobs/sha256"
  install -m 755 "$bin" "$work/rootfs/pause"
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work/rootfs" -cf "$work/layer.tar" pause
  local layer_sha layer_size config_sha config_size manifest_sha manifest_size
  layer_sha=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  layer_size=$(stat -c %s "$work/layer.tar")
  mv "$work/layer.tar" "$work/oci/blobs/sha256/$layer_sha"
  printf '{"architecture":"amd64","os":"linux","config":{"User":"65535:65535","Entrypoint":["/pause"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"modelfleet scripts/k8s/build.sh"}]}' \
    "$layer_sha" >"$work/config.json"
  config_sha=$(sha256sum "$work/config.json" | cut -d' ' -f1)
  config_size=$(stat -c %s "$work/config.json")
  mv "$work/config.json" "$work/oci/blobs/sha256/$config_sha"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$config_sha" "$config_size" "$layer_sha" "$layer_size" >"$work/manifest.json"
  manifest_sha=$(sha256sum "$work/manifest.json" | cut -d' ' -f1)
  manifest_size=$(stat -c %s "$work/manifest.json")
  mv "$work/manifest.json" "$work/oci/blobs/sha256/$manifest_sha"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"},"platform":{"architecture":"amd64","os":"linux"}}]}' \
    "$manifest_sha" "$manifest_size" "$K8S_PAUSE_IMAGE" "${K8S_PAUSE_IMAGE##*:}" >"$work/oci/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
  mkdir -p "$(dirname "$out")"
  tar --owner=0 --group=0 --numeric-owner -C "$work/oci" -cf "$out.tmp" oci-layout index.json blobs
  mv "$out.tmp" "$out"
  rm -rf "$work"
}

main() {
  local t0=$SECONDS
  mkdir -p "$K8S_CACHE"
  exec 9>"$K8S_CACHE/.build.lock"
  flock 9
  install_packages
  if have_binaries && [ -z "${K8S_REBUILD:-}" ]; then
    log "binaries already in $K8S_BIN (K8S_REBUILD=1 to rebuild)"
  else
    fetch_source
    unpack_source
    patch_reflect2
    build_binaries
    build_pause
    if [ -z "${K8S_KEEP_BUILD:-}" ]; then
      rm -rf "$K8S_CACHE/build"
    fi
  fi
  "$K8S_BIN/kube-apiserver" --version
  log "build done in $((SECONDS - t0))s; binaries: $(cd "$K8S_BIN" && echo *)"
}

main "$@"
