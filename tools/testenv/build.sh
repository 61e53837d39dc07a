#!/usr/bin/env bash
# Builds the real upstream binaries the tests run (DESIGN.md section 6) from
# their Go modules, into a cache outside the clone:
#
#   ${FACECAST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/facecast}/testenv/<key>/bin
#
# <key> hashes this script and every go.mod/go.sum under tools/testenv, so
# changing a pin builds into a fresh directory. The versions are pinned in the
# go.mod files only; this script reads them from there for the version ldflags.
#
# Progress goes to stderr; the bin dir is the last line of stdout, so callers
# can do: export FACECAST_TESTENV_BIN=$(tools/testenv/build.sh)
#
# Usage: build.sh [--print-key]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${FACECAST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/facecast}

# name, module directory (under tools/testenv), main package.
tools=(
  "etcd                    etcd       go.etcd.io/etcd/server/v3"
  "kwok                    kwok       sigs.k8s.io/kwok/cmd/kwok"
  "helm                    helm       helm.sh/helm/v3/cmd/helm"
  "livekit-server          livekit    github.com/livekit/livekit-server/cmd/server"
  "kube-apiserver          kubernetes k8s.io/kubernetes/cmd/kube-apiserver"
  "kube-controller-manager kubernetes k8s.io/kubernetes/cmd/kube-controller-manager"
  "kube-scheduler          kubernetes k8s.io/kubernetes/cmd/kube-scheduler"
  "kubectl                 kubernetes k8s.io/kubernetes/cmd/kubectl"
  "kubelet                 kubernetes k8s.io/kubernetes/cmd/kubelet"
)

log() { printf '%s\n' "$*" >&2; }

cache_key() {
  # LC_ALL=C: the same file order, so the same key, on every machine.
  (cd "$here" && export LC_ALL=C && sha256sum -- build.sh */go.mod */go.sum | sha256sum | cut -c1-16)
}

key=$(cache_key)
if [[ "${1:-}" == "--print-key" ]]; then
  echo "$key"
  exit 0
fi
bin="$cache/testenv/$key/bin"

# kwok has no built-in stages: it needs Stage objects in a config file. The
# ones kwokctl uses ship inside the kwok module; copy them from the pinned
# module rather than keeping a second copy in this repo.
kwok_stages=kwok-stages.yaml
kwok_stage_files=(
  kustomize/stage/node/fast/node-initialize.yaml
  kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  kustomize/stage/pod/fast/pod-ready.yaml
  kustomize/stage/pod/fast/pod-complete.yaml
  kustomize/stage/pod/fast/pod-delete.yaml
)

missing=()
for entry in "${tools[@]}"; do
  read -r name _ _ <<<"$entry"
  [[ -x "$bin/$name" ]] || missing+=("$name")
done
[[ -f "$bin/$kwok_stages" ]] || missing+=("$kwok_stages")
if [[ ${#missing[@]} -eq 0 ]]; then
  log "testenv: all ${#tools[@]} binaries cached in $bin"
  echo "$bin"
  exit 0
fi

go=${FACECAST_GO:-$(command -v go || echo /usr/local/go/bin/go)}
[[ -x "$go" ]] || { log "testenv: no Go toolchain (set FACECAST_GO or put go on PATH)"; exit 1; }

# Module and build caches live beside the binaries so a fresh clone reuses
# them; GOTOOLCHAIN=local stops go from downloading a different toolchain;
# -mod=readonly builds exactly the checked-in go.sum (a pin changed without
# `go mod tidy` fails here rather than being resolved afresh); CGO_ENABLED=0
# gives static binaries, as upstream releases them, and needs no C compiler.
export GOMODCACHE="$cache/go/mod" GOCACHE="$cache/go/build"
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
mkdir -p "$bin" "$GOMODCACHE" "$GOCACHE"

# module_version DIR MODULE: the version DIR/go.mod requires MODULE at.
module_version() {
  awk -v m="$2" '$1 == m && $2 ~ /^v/ && $3 != "=>" { print $2; exit }' "$here/$1/go.mod"
}

ldflags_for() {
  local dir=$1 flags="-s -w" v major minor
  case "$dir" in
    kubernetes)
      v=$(module_version kubernetes k8s.io/kubernetes)
      major=${v#v}; major=${major%%.*}
      minor=${v#v"$major".}; minor=${minor%%.*}
      for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
        flags+=" -X $pkg.gitTreeState=clean"
      done
      ;;
    helm)
      v=$(module_version helm helm.sh/helm/v3)
      flags+=" -X helm.sh/helm/v3/internal/version.version=$v"
      flags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
      # Without these, helm template assumes Kubernetes v1.20.
      minor=$(module_version helm k8s.io/client-go); minor=${minor#v0.}; minor=${minor%%.*}
      for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        flags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
      done
      ;;
    kwok)
      v=$(module_version kwok sigs.k8s.io/kwok)
      flags+=" -X sigs.k8s.io/kwok/pkg/consts.Version=${v#v}"
      ;;
  esac
  echo "$flags"
}

log "testenv: building ${#missing[@]} missing (${missing[*]}) into $bin ($("$go" version))"
total_start=$SECONDS
for entry in "${tools[@]}"; do
  read -r name dir pkg <<<"$entry"
  if [[ -x "$bin/$name" ]]; then
    log "testenv: $name cached"
    continue
  fi
  log "testenv: building $name ($pkg)..."
  start=$SECONDS
  # Build to a temporary name and rename: an interrupted build never leaves a
  # binary that the -x check above would mistake for a finished one.
  tmp="$bin/.$name.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  if ! (cd "$here/$dir" && "$go" build -trimpath -ldflags "$(ldflags_for "$dir")" -o "$tmp" "$pkg") >&2; then
    rm -f "$tmp"
    log "testenv: FAILED to build $name ($pkg in tools/testenv/$dir)"
    exit 1
  fi
  mv -f "$tmp" "$bin/$name"
  trap - EXIT
  log "testenv: $name done in $((SECONDS - start))s"
done
if [[ ! -f "$bin/$kwok_stages" ]]; then
  kwok_dir=$(cd "$here/kwok" && "$go" list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  tmp="$bin/.$kwok_stages.tmp.$$"
  for f in "${kwok_stage_files[@]}"; do
    printf -- '---\n# from sigs.k8s.io/kwok@%s %s\n' "$(module_version kwok sigs.k8s.io/kwok)" "$f"
    cat "$kwok_dir/$f"
  done >"$tmp" || { rm -f "$tmp"; log "testenv: FAILED to collect kwok stages"; exit 1; }
  mv -f "$tmp" "$bin/$kwok_stages"
  log "testenv: $kwok_stages written"
fi
log "testenv: all done in $((SECONDS - total_start))s"
echo "$bin"
