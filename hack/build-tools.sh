#!/usr/bin/env bash
# Build the real Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, etcd, kubectl), KWOK and helm from Go modules, cached outside the
# repo keyed by version. Idempotent: a component whose binary is cached is skipped.
#
# Why a generated module: k8s.io/kubernetes's go.mod points every staging module at
# ./staging, so `go install k8s.io/kubernetes/cmd/...@v` fails; we require it from a
# tiny module that replaces each staging module with its published v0.Y.Z.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-v1.6.3}"
# The newest `go` directive among the modules built here (k8s.io/kubernetes v1.36.3,
# sigs.k8s.io/kwok v0.8.0 and helm.sh/helm/v3 v3.22.0 all say `go 1.26.0`). With
# GOTOOLCHAIN=local an older go refuses them after minutes of downloads, so it is
# checked before any build. Raise it together with the versions above.
GO_MIN="${GO_MIN:-1.26.0}"
CACHE="${GOODPUT_TOOLS_CACHE:-$HOME/.cache/goodput-operator}"
BIN="$CACHE/bin"

export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$BIN"

log() { printf '[build-tools] %s\n' "$*" >&2; }

# Fails with the version needed when go is missing or older than GO_MIN.
require_go() {
  local have
  if ! command -v go >/dev/null 2>&1; then
    log "ERROR: go is not on PATH; building the test tools needs Go >= $GO_MIN (https://go.dev/dl/)"
    exit 1
  fi
  have=$(go env GOVERSION 2>/dev/null || true)
  have="${have#go}"; have="${have%%[!0-9.]*}"
  if [ -z "$have" ] || [ "$(printf '%s\n%s\n' "$GO_MIN" "$have" | sort -V | head -n1)" != "$GO_MIN" ]; then
    log "ERROR: $(command -v go) is Go ${have:-unknown}; building the test tools needs Go >= $GO_MIN (https://go.dev/dl/; GOTOOLCHAIN=local, so go will not download a newer one)"
    exit 1
  fi
}

k8s_dir="$BIN/kubernetes-$K8S_VERSION"
build_kubernetes() {
  local want=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd)
  local missing=0
  for b in "${want[@]}"; do [ -x "$k8s_dir/$b" ] || missing=1; done
  [ "$missing" = 0 ] && { log "kubernetes $K8S_VERSION cached in $k8s_dir"; return; }
  require_go

  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local patch="${K8S_VERSION##*.}"
  local staging="v0.$minor.$patch"
  local mod="$CACHE/src/kubernetes-$K8S_VERSION"
  mkdir -p "$mod"
  log "building kubernetes $K8S_VERSION (staging modules at $staging) in $mod"
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module goodput.dev/k8s-build"
    echo
    echo "go $GO_MIN"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    grep -E '^\s*k8s.io/[a-z0-9-]+ => ./staging/' "$gomod" | awk -v s="$staging" '{print "\t" $1 " => " $1 " " s}'
    echo ")"
  } > "$mod/go.mod"
  # Blank imports keep every command's dependency graph in the module.
  cat > "$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  # etcd at exactly the version Kubernetes pins, so no dependency moves.
  local etcd_version
  etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2}' "$gomod")
  (cd "$mod" && go get "k8s.io/kubernetes@$K8S_VERSION" "go.etcd.io/etcd/server/v3@$etcd_version" && go mod tidy)
  local major=1
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ld="$ld -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  mkdir -p "$k8s_dir.tmp"
  (cd "$mod" && go build -trimpath -ldflags "$ld" -o "$k8s_dir.tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$k8s_dir.tmp/etcd" go.etcd.io/etcd/server/v3)
  rm -rf "$k8s_dir" && mv "$k8s_dir.tmp" "$k8s_dir"
  log "kubernetes $K8S_VERSION built"
}

kwok_dir="$BIN/kwok-$KWOK_VERSION"
build_kwok() {
  [ -x "$kwok_dir/kwok" ] && { log "kwok $KWOK_VERSION cached"; return; }
  require_go
  log "building kwok $KWOK_VERSION"
  mkdir -p "$kwok_dir.tmp"
  GOBIN="$kwok_dir.tmp" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # The Stage documents (node/pod lifecycle) ship in the module, not in the binary.
  local src
  src=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])')
  mkdir -p "$kwok_dir.tmp/stage"
  cp -r "$src/kustomize/stage/." "$kwok_dir.tmp/stage/"
  chmod -R u+w "$kwok_dir.tmp/stage"
  rm -rf "$kwok_dir" && mv "$kwok_dir.tmp" "$kwok_dir"
}

# helm's default Kubernetes version (helm template/lint) is stamped to ours, so it is
# part of the cache key.
K8S_MINOR="${K8S_VERSION#v1.}"; K8S_MINOR="${K8S_MINOR%%.*}"
helm_dir="$BIN/helm-$HELM_VERSION-k8s1.$K8S_MINOR"
build_helm() {
  [ -x "$helm_dir/helm" ] && { log "helm $HELM_VERSION cached"; return; }
  require_go
  log "building helm $HELM_VERSION"
  mkdir -p "$helm_dir.tmp"
  local ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ld="$ld -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ld="$ld -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$K8S_MINOR"
  done
  GOBIN="$helm_dir.tmp" go install -trimpath -ldflags "$ld" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  rm -rf "$helm_dir" && mv "$helm_dir.tmp" "$helm_dir"
}

# The Gateway API's standard-channel CRDs (HTTPRoute, Gateway, GatewayClass, ...) as the
# sigs.k8s.io/gateway-api module ships them: the traffic-split tests edit real HTTPRoutes
# against the real schema (its weight bounds, its CEL rules), not a copy of ours. Only
# YAML is taken from the module; nothing is built.
gateway_api_dir="$CACHE/gateway-api-$GATEWAY_API_VERSION"
fetch_gateway_api() {
  local want=(httproutes gateways gatewayclasses)
  local missing=0
  for c in "${want[@]}"; do
    [ -s "$gateway_api_dir/crd/gateway.networking.k8s.io_$c.yaml" ] || missing=1
  done
  [ "$missing" = 0 ] && { log "gateway-api $GATEWAY_API_VERSION CRDs cached in $gateway_api_dir"; return; }
  require_go
  log "fetching gateway-api $GATEWAY_API_VERSION CRDs"
  local src
  src=$(go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["Dir"])')
  rm -rf "$gateway_api_dir.tmp" && mkdir -p "$gateway_api_dir.tmp/crd"
  # The CRDs only: the channel's ValidatingAdmissionPolicy (safe-upgrades) guards
  # upgrades of a shared cluster and is not part of the API under test.
  cp "$src"/config/crd/standard/gateway.networking.k8s.io_*.yaml "$gateway_api_dir.tmp/crd/"
  rm -f "$gateway_api_dir.tmp/crd/gateway.networking.k8s.io_vap_safeupgrades.yaml"
  chmod -R u+w "$gateway_api_dir.tmp"
  for c in "${want[@]}"; do
    [ -s "$gateway_api_dir.tmp/crd/gateway.networking.k8s.io_$c.yaml" ] || {
      log "ERROR: sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION has no config/crd/standard/gateway.networking.k8s.io_$c.yaml"
      exit 1
    }
  done
  rm -rf "$gateway_api_dir" && mv "$gateway_api_dir.tmp" "$gateway_api_dir"
}

case "${1:-all}" in
  all) build_helm; build_kwok; build_kubernetes; fetch_gateway_api ;;
  kubernetes) build_kubernetes ;;
  kwok) build_kwok ;;
  helm) build_helm ;;
  gateway-api) fetch_gateway_api ;;
  # Up-front check for make: Go is needed only when some binary is not cached yet.
  check)
    for b in kube-apiserver kube-controller-manager kube-scheduler kubectl etcd; do
      [ -x "$k8s_dir/$b" ] || { require_go; exit 0; }
    done
    [ -x "$kwok_dir/kwok" ] && [ -x "$helm_dir/helm" ] || require_go
    [ -s "$gateway_api_dir/crd/gateway.networking.k8s.io_httproutes.yaml" ] || require_go
    ;;
  paths) echo "K8S_BIN=$k8s_dir"; echo "KWOK_BIN=$kwok_dir"; echo "HELM_BIN=$helm_dir"; echo "GATEWAY_API_CRDS=$gateway_api_dir/crd" ;;
  *) echo "usage: $0 [all|kubernetes|kwok|helm|gateway-api|check|paths]" >&2; exit 2 ;;
esac
