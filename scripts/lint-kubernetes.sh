#!/usr/bin/env bash
# `make lint`: each overlay of deploy/kubernetes rendered by kubectl's kustomize and checked
# against the Kubernetes API schemas of the oldest version the manifests need (1.30: the
# preStop sleep action), offline and strictly (an unknown field is an error).
set -euo pipefail
cd "$(dirname "$0")/.."
KUBERNETES_VERSION=1.30.0

if ! command -v kubectl >/dev/null 2>&1; then
    echo "kubectl is needed to render deploy/kubernetes (kustomize v5, kubectl 1.27 or newer)" >&2
    exit 1
fi
rendered=$(mktemp -d)
trap 'rm -rf "$rendered"' EXIT
for overlay in deploy/kubernetes/overlays/*/; do
    name=$(basename "$overlay")
    kubectl kustomize "$overlay" > "$rendered/$name.yaml"
    "${VENV:-.venv}/bin/kubernetes-validate" --strict --quiet -k "$KUBERNETES_VERSION" "$rendered/$name.yaml"
    echo "deploy/kubernetes/overlays/$name: $(grep -c '^kind:' "$rendered/$name.yaml") resources valid for Kubernetes $KUBERNETES_VERSION"
done
