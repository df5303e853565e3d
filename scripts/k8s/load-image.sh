#!/usr/bin/env bash
# Copies podman images into the cluster's containerd (the CRI "k8s.io" namespace), so pods
# can use them with imagePullPolicy IfNotPresent (or Never) without any registry:
#
#   scripts/k8s/load-image.sh localhost/modelfleet-base:bookworm [MORE_IMAGES...]
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

need_root
[ $# -ge 1 ] || die "usage: $0 IMAGE [IMAGE...]   (podman image names, e.g. localhost/modelfleet-base:bookworm)"
[ -S "$CTRD_SOCK" ] || die "no cluster containerd at $CTRD_SOCK: run scripts/k8s/up.sh first"
command -v podman >/dev/null || die "podman not found"

for image in "$@"; do
  podman image exists "$image" || die "podman has no image $image"
  t0=$SECONDS
  # docker-archive keeps the image's name (RepoTags), which ctr uses as the image name.
  podman save --format docker-archive "$image" | ctr_k8s images import - >/dev/null
  # Check under the name a pod spec would use (containerd normalises short names).
  ref=$image
  case "${image%%/*}" in
    *.* | *:* | localhost) ;;
    *) ref=docker.io/$image ;;
  esac
  [[ "$image" == */* ]] || ref=docker.io/library/$image
  [[ "$ref" == *:* || "$ref" == *@* ]] || ref=$ref:latest
  ctr_k8s images ls -q "name==$ref" | grep -qxF "$ref" || die "import of $image did not produce $ref"
  log "loaded $image into the cluster's containerd as $ref in $((SECONDS - t0))s"
done
