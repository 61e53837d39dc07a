#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs, then lint, types and tests.
# Extra arguments go to pytest (e.g. tools/test.sh -k crd -x).
source "$(dirname "$0")/bootstrap.sh"
ensure_testenv_binaries
ensure_web_packages   # tests/demo: the page's LiveKit client, playwright-core
ensure_chromium       # tests/demo: Debian's chromium for the browser test
ensure_demo_packages  # espeak-ng: the demo avatar says a real sentence
trap stop_docker EXIT # the dockerd ensure_docker started, if it started one (not one already up)
ensure_docker         # tests/images: Docker Engine and mmdebstrap, the images built and run
ensure_node_runtime   # tests/node: containerd, runc, CNI plugins for the real kubelet
cd "$FACECAST_ROOT"

step "ruff"
uv run --frozen --no-sync ruff check .
uv run --frozen --no-sync ruff format --check .

step "mypy (strict)"
uv run --frozen --no-sync mypy -p avatar_crds -p facecast_kube -p api_shim -p avatar_operator -p avatar_worker -p facecast \
    -p livekit.plugins.facecast
# Tests are checked apart: as files under the repo root, not as the installed packages.
test_dirs=()
for dir in crds/tests kube_client/tests api_shim/tests operator/tests worker_image/tests \
    client/tests livekit_plugin/tests examples testbed tests bench tools/localstack; do
    [ -d "$dir" ] && test_dirs+=("$dir")
done
uv run --frozen --no-sync mypy "${test_dirs[@]}"

step "generated CRDs are up to date"
uv run --frozen --no-sync facecast-gen-crds --check

step "pytest"
# pytest exits 5 when it collected nothing: that is a failure here too. The slowest tests are
# listed so the warm run's 15-minute budget is watched where it is spent.
uv run --frozen --no-sync pytest --durations=20 "$@"
