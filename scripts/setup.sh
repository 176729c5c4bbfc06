#!/usr/bin/env bash
# Installs what sap-harness needs and is missing, then builds `sap`. Idempotent: with
# everything in place it only checks (a few seconds) and lets cargo decide what to rebuild.
#
#   Debian packages: a C++ compiler and zlib1g-dev (ALE's build), libsdl2-gfx-dev and cmake
#   (gym-rs's SDL2),
#   fonts-dejavu-core (text in `sap report`'s PNG plots); with
#   SAP_WITH_SLURM=1 also slurm-wlm and munge (the one-node Slurm of the integration test,
#   scripts/local-slurm.sh).
#   .venv/: Python venv holding the PyPI wheel torch==2.13.0, whose libtorch tch links, and
#   ale-py==0.12.1, whose wheel carries the standard Atari ROM files `sap` plays (and the ALE
#   that the conformance check compares against).
#
# Environment: SAP_PROFILE=release|dev (default release), SAP_SKIP_BUILD=1 to stop after
# installing, SAP_WITH_SLURM=1 for the Slurm packages.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.13.0
ALE_PY_VERSION=0.12.1
ALE_PY_SDIST_SHA256=c503d574c5983e1063b451201ccb779d935919c0f6bf116fb0f4f8aa4c86d249
VENV=.venv
log() { printf '[setup] %s\n' "$*" >&2; }

# 1. Debian packages.
pkgs=(cmake libsdl2-gfx-dev g++ pkg-config python3-venv fonts-dejavu-core zlib1g-dev)
[[ "${SAP_WITH_SLURM:-0}" == 1 ]] && pkgs+=(slurm-wlm munge)
need=()
for pkg in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
# A python3 with a working venv module (pyenv or other) makes Debian's python3-venv optional.
if [[ " ${need[*]-} " == *" python3-venv "* ]] && python3 -c 'import venv, ensurepip' 2>/dev/null; then
    need=("${need[@]/python3-venv}")
fi
need=(${need[@]+"${need[@]}"})
if ((${#need[@]})); then
    log "installing Debian packages: ${need[*]}"
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# 2. Rust toolchain.
if ! command -v cargo >/dev/null; then
    [[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null || { log "cargo not found: install Rust (rustup) first"; exit 1; }

# 3. libtorch from the torch wheel, in a project-local venv.
#    numpy and safetensors serve the PyTorch reference scripts in tests/golden/.
have_torch() {
    "$VENV/bin/python" -c "import torch, numpy, safetensors, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null
}
if ! have_torch; then
    log "setting up $VENV with torch==$TORCH_VERSION (a large download on first use)"
    [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet "torch==$TORCH_VERSION" numpy safetensors
    have_torch || { log "torch $TORCH_VERSION, numpy or safetensors did not import from $VENV"; exit 1; }
fi

# 4. The standard Atari ROMs: the files the ale-py wheel ships (3 MB). `sap` checks each
#    file's MD5 against its own table before ALE loads it. The same release's source
#    distribution (11 MB, pinned by SHA-256) holds the ALE that build.rs compiles into `sap`,
#    so `sap` emulates exactly what ale-py does; pip prepares its metadata with
#    scikit-build-core.
have_ale_py() {
    "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('ale-py') != '$ALE_PY_VERSION')" 2>/dev/null
}
if ! have_ale_py; then
    log "installing ale-py==$ALE_PY_VERSION into $VENV (the standard Atari ROM files)"
    "$VENV/bin/python" -m pip install --quiet "ale-py==$ALE_PY_VERSION"
    have_ale_py || { log "ale-py $ALE_PY_VERSION did not install into $VENV"; exit 1; }
fi
ALE_SRC="$VENV/src/ale_py-$ALE_PY_VERSION"
if [[ ! -f "$ALE_SRC/src/ale/ale_interface.cpp" ]]; then
    log "fetching the ALE $ALE_PY_VERSION sources (ale-py's source distribution)"
    "$VENV/bin/python" -m pip install --quiet "scikit-build-core>=0.10"
    tmp=$(mktemp -d)
    echo "ale-py==$ALE_PY_VERSION --hash=sha256:$ALE_PY_SDIST_SHA256" > "$tmp/requirements.txt"
    "$VENV/bin/python" -m pip download --quiet --no-deps --no-binary :all: \
        --no-build-isolation --require-hashes -r "$tmp/requirements.txt" -d "$tmp"
    mkdir -p "$VENV/src"
    tar xzf "$tmp/ale_py-$ALE_PY_VERSION.tar.gz" -C "$VENV/src"
    rm -rf "$tmp"
    [[ -f "$ALE_SRC/src/ale/ale_interface.cpp" ]] || { log "the ALE sources did not unpack into $ALE_SRC"; exit 1; }
fi

[[ "${SAP_SKIP_BUILD:-0}" == 1 ]] && exit 0

# 5. Build. tch finds libtorch through the venv's python; build.rs adds the rpath.
export LIBTORCH_USE_PYTORCH=1 PATH="$PWD/$VENV/bin:$PATH"
profile=${SAP_PROFILE:-release}
if [[ $profile == release ]]; then
    cargo build --release --quiet
else
    cargo build --quiet
fi
