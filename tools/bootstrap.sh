# shellcheck shell=bash
# Sourced by tools/test.sh and tools/demo.sh: prepares a fresh machine and exports the environment.
# Everything heavy is cached outside the clone under $FACECAST_CACHE, keyed by the lock files,
# so a clean clone on a warm machine only re-links the workspace packages.
set -euo pipefail

FACECAST_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export FACECAST_ROOT
export FACECAST_CACHE=${FACECAST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/facecast}
UV_VERSION=0.13.8

step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_uv() {
    local dir=$FACECAST_CACHE/uv/$UV_VERSION
    if [ ! -x "$dir/bin/uv" ]; then
        step "installing uv $UV_VERSION into $dir"
        rm -rf "$dir.partial"
        python3 -m pip install --quiet --disable-pip-version-check --target "$dir.partial" "uv==$UV_VERSION"
        rm -rf "$dir" && mv "$dir.partial" "$dir"
    fi
    export PATH=$dir/bin:$PATH
}

ensure_python_env() {
    export UV_CACHE_DIR=$FACECAST_CACHE/uv-cache
    export UV_PYTHON_DOWNLOADS=never
    export UV_PYTHON=python3.11
    local key
    key=$(cat "$FACECAST_ROOT/uv.lock" "$FACECAST_ROOT/.python-version" 2>/dev/null | sha256sum | cut -c1-16)
    export UV_PROJECT_ENVIRONMENT=$FACECAST_CACHE/venvs/$key
    step "python environment $UV_PROJECT_ENVIRONMENT"
    (cd "$FACECAST_ROOT" && uv sync --frozen --all-packages --quiet)
}

ensure_testenv_binaries() {
    step "test binaries (kube-apiserver, etcd, kwok, helm, livekit-server, ...)"
    FACECAST_TESTENV_BIN=$("$FACECAST_ROOT/tools/testenv/build.sh" | tail -n 1)
    export FACECAST_TESTENV_BIN
    export PATH=$FACECAST_TESTENV_BIN:$PATH
}

ensure_uv
ensure_python_env
