#!/usr/bin/env bash
# The main job: Facecast on 127.0.0.1 (control plane, livekit-server, operator, API, a local GPU
# node that runs worker pods as processes) with a demo session whose avatar talks, a page to
# watch it, and a recording of its first seconds. Ctrl-C stops everything.
# Options: --no-browser-page, --record PATH, --record-seconds N, --keep, --real-node (worker
# pods as containers on the real kubelet; needs root).
FACECAST_DEMO_STARTED=$(date +%s.%N)
export FACECAST_DEMO_STARTED
source "$(dirname "$0")/bootstrap.sh"
ensure_testenv_binaries
ensure_demo_packages
ensure_web_packages
cd "$FACECAST_ROOT"
if [[ " $* " == *" --real-node "* ]]; then
    # Worker pods as containers on the real kubelet: Docker builds the worker image, containerd
    # runs it. The dockerd started here (if one was not up already) is stopped on exit.
    ensure_node_runtime
    trap stop_docker EXIT
    ensure_docker
    step "starting the local stack (worker pods on the real node)"
    uv run --frozen --no-sync python -m tools.localstack "$@"
    exit
fi
step "starting the local stack"
exec uv run --frozen --no-sync python -m tools.localstack "$@"
