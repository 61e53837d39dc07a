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
# shellcheck source=tools/cache.sh
source "$FACECAST_ROOT/tools/cache.sh"

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
    # Keyed by the checkout too: the workspace's own packages are installed editable, pointing
    # into one checkout, so two checkouts sharing an environment would run each other's code.
    # A new checkout's environment is hardlinked from uv's cache in a second or two.
    local key
    key=$({ cat "$FACECAST_ROOT/uv.lock" "$FACECAST_ROOT/.python-version" 2>/dev/null
            echo "$FACECAST_ROOT"; } | sha256sum | cut -c1-16)
    export UV_PROJECT_ENVIRONMENT=$FACECAST_CACHE/venvs/$key
    step "python environment $UV_PROJECT_ENVIRONMENT"
    (cd "$FACECAST_ROOT" && uv sync --frozen --all-packages --quiet)
    prune_stale "$FACECAST_CACHE/venvs" "$key"
    # mypy's cache is keyed by the lock alone: mypy compares each module's hash when its path or
    # mtime differs, so a fresh clone reuses it (strict checking from cold takes over a minute).
    key=$(cat "$FACECAST_ROOT/uv.lock" "$FACECAST_ROOT/.python-version" | sha256sum | cut -c1-16)
    export MYPY_CACHE_DIR=$FACECAST_CACHE/mypy/$key
    mkdir -p "$MYPY_CACHE_DIR"
    prune_stale "$FACECAST_CACHE/mypy" "$key"
}

ensure_testenv_binaries() {
    step "test binaries (kube-apiserver, etcd, kwok, helm, livekit-server, ...)"
    FACECAST_TESTENV_BIN=$("$FACECAST_ROOT/tools/testenv/build.sh" | tail -n 1)
    export FACECAST_TESTENV_BIN
    local keyed=${FACECAST_TESTENV_BIN%/bin}  # $FACECAST_CACHE/testenv/<key>
    prune_stale "${keyed%/*}" "${keyed##*/}"
    export PATH=$FACECAST_TESTENV_BIN:$PATH
}

ensure_uv
ensure_python_env

# Debian packages the demo uses when it can: espeak-ng (real speech for the demo sentence; without
# it the demo agent sends synthetic speech-like audio). Installed only as root with apt-get.
ensure_demo_packages() {
    if ! command -v espeak-ng >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        step "installing espeak-ng (Debian)"
        apt-get install -y -qq espeak-ng >/dev/null 2>&1 \
            || { apt-get update -qq && apt-get install -y -qq espeak-ng >/dev/null; } \
            || echo "espeak-ng not installed: the demo speaks synthetic audio" >&2
    fi
}

# The browser test's Chromium: Debian's package (no browser download).
ensure_chromium() {
    if ! command -v chromium >/dev/null; then
        step "installing chromium (Debian)"
        apt-get install -y -qq chromium >/dev/null 2>&1 \
            || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
    fi
    export FACECAST_CHROMIUM=${FACECAST_CHROMIUM:-$(command -v chromium)}
}

# The image tests' Docker engine: Debian's docker.io (a real dockerd; the tests use its classic
# builder) and mmdebstrap (no image registry is reachable, so the tests make their Debian base
# image from Debian's packages). Starts dockerd if none answers, logging to $FACECAST_CACHE;
# stop_docker stops only a dockerd started here.
FACECAST_DOCKERD_PID=
ensure_docker() {
    if ! command -v dockerd >/dev/null || ! command -v mmdebstrap >/dev/null; then
        step "installing docker.io and mmdebstrap (Debian)"
        apt-get install -y -qq docker.io mmdebstrap >/dev/null 2>&1 \
            || { apt-get update -qq && apt-get install -y -qq docker.io mmdebstrap >/dev/null; }
    fi
    if docker info >/dev/null 2>&1; then
        return
    fi
    step "starting dockerd (log: $FACECAST_CACHE/dockerd.log)"
    mkdir -p "$FACECAST_CACHE"
    dockerd >"$FACECAST_CACHE/dockerd.log" 2>&1 &
    FACECAST_DOCKERD_PID=$!
    local deadline=$((SECONDS + 60))
    until docker info >/dev/null 2>&1; do
        if ! kill -0 "$FACECAST_DOCKERD_PID" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
            echo "dockerd did not start; see $FACECAST_CACHE/dockerd.log" >&2
            return 1
        fi
        sleep 0.2
    done
}

stop_docker() {
    if [ -n "$FACECAST_DOCKERD_PID" ]; then
        kill "$FACECAST_DOCKERD_PID" 2>/dev/null && wait "$FACECAST_DOCKERD_PID" || true
        FACECAST_DOCKERD_PID=
    fi
}

# The real node's container runtime (testbed/real_node.py): Debian's containerd (with its CRI
# plugin), runc and CNI plugins. Only installed; the tests start a private containerd of their own.
ensure_node_runtime() {
    if [ ! -x /usr/bin/containerd ] || [ ! -x /usr/sbin/runc ] || [ ! -x /usr/lib/cni/bridge ]; then
        step "installing containerd, runc and containernetworking-plugins (Debian)"
        apt-get install -y -qq containerd runc containernetworking-plugins >/dev/null 2>&1 \
            || { apt-get update -qq \
                 && apt-get install -y -qq containerd runc containernetworking-plugins >/dev/null; }
    fi
}

# The demo page's LiveKit JS client and the browser test's playwright-core, from the npm
# registry, cached by the lock file's hash (npm ci: exactly the locked versions, no scripts,
# so no browser download).
ensure_web_packages() {
    local web=$FACECAST_ROOT/tools/localstack/web key dir
    key=$(sha256sum "$web/package-lock.json" | cut -c1-16)
    dir=$FACECAST_CACHE/npm/$key
    if [ ! -f "$dir/node_modules/livekit-client/dist/livekit-client.umd.js" ]; then
        step "npm packages (livekit-client, playwright-core) into $dir"
        rm -rf "$dir.partial" && mkdir -p "$dir.partial"
        cp "$web/package.json" "$web/package-lock.json" "$dir.partial/"
        (cd "$dir.partial" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts \
            --no-audit --no-fund --loglevel=error >&2)
        rm -rf "$dir" && mv "$dir.partial" "$dir"
    fi
    prune_stale "$FACECAST_CACHE/npm" "$key"
    export FACECAST_NODE_MODULES=$dir/node_modules
    export FACECAST_LIVEKIT_CLIENT_JS=$dir/node_modules/livekit-client/dist/livekit-client.umd.js
}
