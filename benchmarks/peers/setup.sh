#!/usr/bin/env bash
# Make the peer servers of the serving benchmark runnable; safe to run again.
#
#   benchmarks/peers/setup.sh           # venvs + wrk (skips what is already in place)
#   benchmarks/peers/setup.sh --force   # rebuild both venvs from scratch
#   benchmarks/peers/setup.sh --lock    # re-resolve requirements-*.txt, rewrite constraints-*.txt
#
# Makes two virtualenvs, each from the exact pins in requirements-<peer>.txt constrained by
# the full resolved set in constraints-<peer>.txt:
#   benchmarks/.venvs/mlserver   Seldon MLServer + onnxruntime + numpy
#   benchmarks/.venvs/bentoml    BentoML + onnxruntime + numpy
# then checks that each imports and its command line starts, and installs Debian's wrk when
# it is missing. A venv whose stamp matches its requirement files and that still imports is
# left alone. PYTHON picks the interpreter (default python3.11).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venvs="$(dirname "$here")/.venvs"
python="${PYTHON:-python3.11}"
mode="install"
case "${1:-}" in
  "") ;;
  --force) mode="force" ;;
  --lock) mode="lock" ;;
  -h | --help) sed -n '2,15p' "${BASH_SOURCE[0]}"; exit 0 ;;
  *) echo "usage: $0 [--force|--lock]" >&2; exit 2 ;;
esac

log() { printf '[peers/setup] %s\n' "$*"; }

# pip on this machine lists extra local indexes and prints a harmless
# "Location ... is ignored" line for each; keep everything else.
pip_quiet() {
  local py="$1"; shift
  "$py" -m pip --disable-pip-version-check "$@" 2>&1 | { grep -v 'is ignored' || true; }
  return "${PIPESTATUS[0]}"
}

# The import check per peer: module names, then the command whose --help must work.
check_peer() {
  local peer="$1" dir="$venvs/$1"
  case "$peer" in
    mlserver)
      "$dir/bin/python" - <<'EOF' || return 1
import mlserver, numpy, onnxruntime
from mlserver import MLModel  # noqa: F401  (what mlserver_runtime.py subclasses)
print(f"  mlserver {mlserver.__version__}, onnxruntime {onnxruntime.__version__}, numpy {numpy.__version__}")
EOF
      "$dir/bin/mlserver" --help >/dev/null || return 1
      ;;
    bentoml)
      "$dir/bin/python" - <<'EOF' || return 1
import bentoml, numpy, onnxruntime
from bentoml.validators import DType, Shape  # noqa: F401  (used by bentoml_service.py)
assert callable(bentoml.service) and callable(bentoml.api)
print(f"  bentoml {bentoml.__version__}, onnxruntime {onnxruntime.__version__}, numpy {numpy.__version__}")
EOF
      BENTOML_DO_NOT_TRACK=True "$dir/bin/bentoml" --version >/dev/null || return 1
      ;;
  esac
  pip_quiet "$dir/bin/python" check >/dev/null || return 1
}

stamp_of() {
  {
    cat "$here/requirements-$1.txt" "$here/constraints-$1.txt" 2>/dev/null || true
    "$python" --version
  } | sha256sum | cut -d' ' -f1
}

make_venv() {
  local peer="$1" dir="$venvs/$1"
  local stamp_file="$dir/.installed"
  local want
  want="$(stamp_of "$peer")"
  if [[ "$mode" == "install" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$want" ]] \
    && check_peer "$peer" >/dev/null 2>&1; then
    log "$peer: up to date ($dir)"
    return 0
  fi
  log "$peer: creating $dir"
  rm -rf "$dir"
  "$python" -m venv "$dir"
  local args=(install --quiet -r "$here/requirements-$peer.txt")
  if [[ "$mode" != "lock" ]]; then
    args+=(-c "$here/constraints-$peer.txt")
  fi
  pip_quiet "$dir/bin/python" "${args[@]}"
  if [[ "$mode" == "lock" ]]; then
    {
      echo "# Full resolved set for requirements-$peer.txt (python3.11, linux x86_64)."
      echo "# Written by 'setup.sh --lock'; setup.sh installs with -c on this file."
      pip_quiet "$dir/bin/python" freeze --all --exclude-editable \
        | grep -vE '^(pip|setuptools|wheel)=='
    } >"$here/constraints-$peer.txt"
    log "$peer: wrote constraints-$peer.txt"
    want="$(stamp_of "$peer")"
  fi
  if ! check_peer "$peer"; then
    log "$peer: installed, but the import check failed" >&2
    return 1
  fi
  echo "$want" >"$stamp_file"
  log "$peer: ready"
}

ensure_wrk() {
  if command -v wrk >/dev/null 2>&1; then
    log "wrk: $(command -v wrk)"
    return 0
  fi
  local sudo=()
  if [[ "$(id -u)" != "0" ]]; then
    sudo=(sudo)
  fi
  log "wrk: installing Debian's package"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq wrk >/dev/null
  log "wrk: $(command -v wrk)"
}

if ! command -v "$python" >/dev/null 2>&1; then
  echo "[peers/setup] $python not found (set PYTHON=...)" >&2
  exit 1
fi
if [[ "$mode" != "lock" ]]; then
  for peer in mlserver bentoml; do
    if [[ ! -f "$here/constraints-$peer.txt" ]]; then
      echo "[peers/setup] constraints-$peer.txt is missing: run $0 --lock" >&2
      exit 1
    fi
  done
fi

mkdir -p "$venvs"
start=$SECONDS
make_venv mlserver
make_venv bentoml
ensure_wrk
log "done in $((SECONDS - start))s"
