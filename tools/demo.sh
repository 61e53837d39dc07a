#!/usr/bin/env bash
# The main job: Facecast on 127.0.0.1 (control plane, livekit-server, operator, API, a GPU node:
# the real kubelet on containerd as root, else a stand-in that runs worker pods as processes)
# with a demo session whose avatar talks, a page to watch it, and a recording of its first
# seconds. Ctrl-C stops everything.
# Options: --no-browser-page, --record PATH, --record-seconds N, --keep, --local-node.
FACECAST_DEMO_STARTED=$(date +%s.%N)
export FACECAST_DEMO_STARTED
source "$(dirname "$0")/bootstrap.sh"
ensure_testenv_binaries
ensure_demo_packages
ensure_web_packages
cd "$FACECAST_ROOT"
# As root, worker pods run as containers of the worker image on the real kubelet and containerd
# (tools/localstack/worker_nodes.py): Docker builds the image. A dockerd started here (not one
# already up) is stopped on exit. --local-node (and any other user) runs them as processes.
if [ "$(id -u)" = 0 ] && [[ " $* " != *" --local-node "* && " $* " != *" --help "* ]]; then
    ensure_node_runtime
    trap stop_docker EXIT
    ensure_docker
    step "starting the local stack (worker pods on the real node)"
    uv run --frozen --no-sync python -m tools.localstack "$@"
    exit
fi
step "starting the local stack"
exec uv run --frozen --no-sync python -m tools.localstack "$@"
