#!/usr/bin/env bash
# Installs helm (pinned) for the chart's tests, unless a helm of that version is already there.
# It builds helm from the Go module proxy with `go install` (several minutes the first time) into a
# cache outside the repository, reused by later runs. Prints the path of the binary on stdout.
#   .ci/install_helm.sh            -> ~/.cache/medai/bin/helm
#   HELM=$(.ci/install_helm.sh)    -> use "$HELM" (tests/helm reads the HELM variable)
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.17.3}"
# The Kubernetes version helm assumes without a cluster (helm template, helm lint): the release
# Makefile sets it from the client-go that helm v3.17 builds with; a plain go install would say 1.20.
K8S_MAJOR=1
K8S_MINOR=32
BIN_DIR="${MEDAI_TOOLS_BIN:-$HOME/.cache/medai/bin}"
HELM_BIN="$BIN_DIR/helm"
STAMP="$BIN_DIR/helm.version"

if [[ -x "$HELM_BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$HELM_VERSION k8s-$K8S_MAJOR.$K8S_MINOR" ]]; then
    echo "$HELM_BIN"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    for candidate in /usr/local/go/bin/go /usr/lib/go/bin/go; do
        [[ -x "$candidate" ]] && PATH="$(dirname "$candidate"):$PATH" && break
    done
fi
command -v go >/dev/null 2>&1 || { echo "install_helm: go is not installed; cannot build helm" >&2; exit 1; }

mkdir -p "$BIN_DIR"
started=$SECONDS
echo "install_helm: building helm $HELM_VERSION with $(go version) ..." >&2
# Run outside any module so the repository's files play no part; the versions go into the binary
# as the release Makefile puts them.
ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X $pkg.k8sVersionMajor=$K8S_MAJOR -X $pkg.k8sVersionMinor=$K8S_MINOR"
done
(cd "$(mktemp -d)" && GOBIN="$BIN_DIR" GOFLAGS=-buildvcs=false \
    go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2)
echo "$HELM_VERSION k8s-$K8S_MAJOR.$K8S_MINOR" > "$STAMP"
echo "install_helm: helm $HELM_VERSION built in $((SECONDS - started)) s" >&2
echo "$HELM_BIN"
