#!/usr/bin/env bash
# Install everything pesflow needs, idempotently: Debian packages, .venv, torch (pinned first),
# GPAW built with ScaLAPACK + FFTW, and pesflow with its extras. A second run takes seconds.
#
# Environment overrides:
#   PESFLOW_TORCH   torch requirement (default torch==2.13.0), e.g. "torch==2.5.1+cu121"
#   PESFLOW_TORCH_INDEX  extra pip index for torch, e.g. https://download.pytorch.org/whl/cpu
#   PESFLOW_EXTRAS  extras to install (default dft,mace,sevennet,pes,dev)
#   PESFLOW_SKIP_APT=1  skip Debian packages (install them yourself)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv="$root/.venv"
stamp_dir="$venv/.pesflow-stamps"
torch_req=${PESFLOW_TORCH:-torch==2.13.0}
extras=${PESFLOW_EXTRAS:-dft,mace,sevennet,pes,dev}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3

log() { printf '[setup] %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_packages=(build-essential pkg-config libxc-dev libopenblas-dev libscalapack-openmpi-dev
  libopenmpi-dev openmpi-bin libfftw3-dev slurm-wlm munge)
if [ "${PESFLOW_SKIP_APT:-0}" != 1 ] && command -v dpkg >/dev/null; then
  missing=()
  for p in "${apt_packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

if [ ! -x "$venv/bin/python" ]; then
  log "creating $venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
fi
mkdir -p "$stamp_dir"
pip=("$venv/bin/pip" install -q)

# torch first and pinned: anything that pulls an unpinned torch would fetch a multi-GB CUDA build.
if [ "$(cat "$stamp_dir/torch" 2>/dev/null)" != "$torch_req" ]; then
  log "installing $torch_req"
  if [ -n "${PESFLOW_TORCH_INDEX:-}" ]; then
    "${pip[@]}" "$torch_req" --extra-index-url "$PESFLOW_TORCH_INDEX"
  else
    "${pip[@]}" "$torch_req"
  fi
  echo "$torch_req" > "$stamp_dir/torch"
fi
torch_pin=$("$venv/bin/python" -c 'import torch; print("torch==" + torch.__version__)')

# GPAW from source with ScaLAPACK and FFTW (siteconfig handed over by GPAW_CONFIG).
if [[ ",$extras," == *",dft,"* ]] && [ ! -f "$stamp_dir/gpaw" ]; then
  log "building GPAW with ScaLAPACK and FFTW (about 2 minutes)"
  GPAW_CONFIG="$root/scripts/gpaw-siteconfig.py" "${pip[@]}" --no-binary gpaw "gpaw==26.7.0"
  "$venv/bin/python" -c 'import gpaw' && touch "$stamp_dir/gpaw"
fi

# pesflow itself; reinstall only when pyproject.toml or the extras changed.
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras $torch_pin"
if [ "$(cat "$stamp_dir/pesflow" 2>/dev/null)" != "$want" ]; then
  log "installing pesflow[$extras]"
  echo "$torch_pin" > "$stamp_dir/constraints.txt"
  PIP_CONSTRAINT="$stamp_dir/constraints.txt" "${pip[@]}" -e ".[$extras]"
  echo "$want" > "$stamp_dir/pesflow"
fi
log "ready: $venv"
