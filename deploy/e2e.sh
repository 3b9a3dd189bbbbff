#!/usr/bin/env bash
# End-to-end test of the monitoring setup: a real Prometheus scrapes the
# running exporter, loads the alert rules, and answers every query of the
# Grafana dashboard and of the rules.
#
# Usage: deploy/e2e.sh PATH/TO/conntrack_exporter
#        CONNTRACK_E2E_TLS=1 deploy/e2e.sh PATH/TO/conntrack_exporter
#
# With CONNTRACK_E2E_TLS=1 the exporter serves HTTPS with basic auth through a
# web configuration file (--web.config.file, a certificate made here by
# openssl, a hash made by htpasswd), the test checks that a request without
# credentials gets 401 and plain HTTP gets nothing, and Prometheus scrapes
# with scheme https, tls_config and basic_auth.
#
# Needs root: everything runs in a private network namespace (its own,
# empty conntrack table, and ports nobody else uses), with a second
# namespace as the remote peer on a veth link (198.51.100.0/24, a
# documentation range that never leaves this machine). Needs the Debian
# package prometheus (installed when missing) and iproute2.
#
# What it does:
#   1. starts the exporter with a temporary config (--config, loopback,
#      tracking switched on in the namespace, 5s resyncs, accounting on), and with
#      CONNTRACK_E2E_TLS=1 a web configuration (HTTPS, basic auth);
#   2. creates traffic with a known shape: connections held open to the peer
#      (open), closed connections (closing, TIME_WAIT) and a connection
#      attempt to an address nobody answers (opening);
#   3. starts Prometheus scraping the exporter every second as job
#      "conntrack-exporter", with alerts.yaml and a critical hosts file as
#      rule files, and waits for several scrapes;
#   4. evaluates every dashboard and rule expression through the HTTP API
#      (/api/v1/query) and fails on any error; checks that every rule is
#      healthy, that every metric those expressions use exists, and that
#      the per-host gauges show the traffic of step 2.
set -euo pipefail

if [[ $# -ne 1 || ! -x $1 ]]; then
    echo "usage: $0 PATH/TO/conntrack_exporter" >&2
    exit 2
fi
EXPORTER_BIN=$(realpath "$1")
DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TLS=${CONNTRACK_E2E_TLS:-0}

if [[ $(id -u) -ne 0 ]]; then
    echo "$0 needs root: it creates network namespaces and the exporter needs CAP_NET_ADMIN" >&2
    exit 2
fi
packages=(prometheus iproute2)
[[ $TLS == 1 ]] && packages+=(openssl apache2-utils)
if ! command -v prometheus >/dev/null || ! command -v ip >/dev/null ||
    { [[ $TLS == 1 ]] && ! command -v htpasswd >/dev/null; } ||
    { [[ $TLS == 1 ]] && ! command -v openssl >/dev/null; }; then
    # policy-rc.d keeps the package's own Prometheus service from starting.
    created_policy=no
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        created_policy=yes
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    [[ $created_policy == yes ]] && rm -f /usr/sbin/policy-rc.d
fi

# Re-run inside a new network namespace; it disappears with the last
# process in it.
if [[ -z ${CONNTRACK_E2E_IN_NETNS:-} ]]; then
    exec unshare --net env CONNTRACK_E2E_IN_NETNS=1 CONNTRACK_E2E_TLS="$TLS" bash "${BASH_SOURCE[0]}" "$EXPORTER_BIN"
fi

PYTHON=python3
python3 -c 'import yaml' 2>/dev/null || PYTHON=/usr/bin/python3

WORK_DIR=$(mktemp -d)
EXPORTER_PORT=9318
PROMETHEUS_URL=http://127.0.0.1:9090
LOCAL_ADDRESS=198.51.100.1
PEER_ADDRESS=198.51.100.2
SILENT_ADDRESS=198.51.100.3 # on the link, but no host answers
PEER_PORT=8080
HELD_CONNECTIONS=3

background_pids=()
cleanup() {
    local status=$?
    for pid in "${background_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [[ $status -ne 0 ]]; then
        for log_file in "$WORK_DIR"/*.log; do
            [[ -f $log_file ]] || continue
            echo "--- last lines of $(basename "$log_file")" >&2
            tail -n 30 "$log_file" >&2
        done
    fi
    rm -rf "$WORK_DIR"
    exit "$status"
}
trap cleanup EXIT

step() { printf '== %s\n' "$*"; }

# http_status URL [CA_FILE USER PASSWORD]: prints the HTTP status of a GET (0
# when there is no HTTP answer), trusting CA_FILE and sending basic auth
# credentials when given.
http_status() {
    "$PYTHON" - "$@" <<'EOF'
import base64, ssl, sys, urllib.error, urllib.request
url = sys.argv[1]
request = urllib.request.Request(url)
context = None
if len(sys.argv) > 2:
    context = ssl.create_default_context(cafile=sys.argv[2])
if len(sys.argv) > 3:
    token = base64.b64encode(f"{sys.argv[3]}:{sys.argv[4]}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
try:
    with urllib.request.urlopen(request, timeout=2, context=context) as response:
        print(response.status)
except urllib.error.HTTPError as error:
    print(error.code)
except Exception:
    print(0)
EOF
}

wait_for_http() { # URL SECONDS [CA_FILE USER PASSWORD]
    local url=$1 deadline=$((SECONDS + $2))
    until [[ $(http_status "$url" "${@:3}") == 200 ]]; do
        if ((SECONDS >= deadline)); then
            echo "no answer from $url after $2s" >&2
            return 1
        fi
        sleep 0.5
    done
}

step "network: loopback, and a peer namespace behind a veth link"
ip link set lo up
unshare --net sleep infinity &
peer_pid=$!
background_pids+=("$peer_pid")
sleep 0.2
in_peer() { nsenter --net="/proc/$peer_pid/ns/net" "$@"; }
ip link add e2e-local type veth peer name e2e-peer netns "$peer_pid"
ip address add "$LOCAL_ADDRESS/24" dev e2e-local
ip link set e2e-local up
in_peer ip link set lo up
in_peer ip address add "$PEER_ADDRESS/24" dev e2e-peer
in_peer ip link set e2e-peer up

step "peer: HTTP server on $PEER_ADDRESS:$PEER_PORT"
mkdir -p "$WORK_DIR/www"
echo ok >"$WORK_DIR/www/index.html"
in_peer "$PYTHON" -m http.server --bind "$PEER_ADDRESS" --directory "$WORK_DIR/www" "$PEER_PORT" \
    >"$WORK_DIR/peer-http.log" 2>&1 &
background_pids+=("$!")
wait_for_http "http://$PEER_ADDRESS:$PEER_PORT/" 20

step "exporter: $EXPORTER_BIN"
"$EXPORTER_BIN" --version
cat >"$WORK_DIR/exporter.toml" <<EOF
bind_address = "127.0.0.1"
listen_port = $EXPORTER_PORT
listen_path = "/metrics"
ensure_tracking = true
resync_interval = "5s"
accounting = true
EOF
exporter_args=(--config "$WORK_DIR/exporter.toml")
EXPORTER_URL=http://127.0.0.1:$EXPORTER_PORT
exporter_access=()
if [[ $TLS == 1 ]]; then
    step "web configuration: HTTPS with a certificate made here, basic auth"
    openssl req -x509 -nodes -days 2 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -subj "/CN=conntrack-exporter e2e CA" -addext "basicConstraints=critical,CA:TRUE" \
        -keyout "$WORK_DIR/ca.key" -out "$WORK_DIR/ca.crt" 2>/dev/null
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -subj "/CN=127.0.0.1" -keyout "$WORK_DIR/server.key" -out "$WORK_DIR/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$WORK_DIR/server.ext"
    openssl x509 -req -days 2 -in "$WORK_DIR/server.csr" -CA "$WORK_DIR/ca.crt" -CAkey "$WORK_DIR/ca.key" \
        -CAcreateserial -extfile "$WORK_DIR/server.ext" -out "$WORK_DIR/server.crt" 2>/dev/null
    SCRAPE_PASSWORD=e2e-$RANDOM-$RANDOM
    printf '%s' "$SCRAPE_PASSWORD" >"$WORK_DIR/scrape.password"
    hash=$(htpasswd -nbBC 6 "" "$SCRAPE_PASSWORD" | tr -d ':\n')
    cat >"$WORK_DIR/web-config.yml" <<EOF
tls_server_config:
  cert_file: server.crt
  key_file: server.key
http_server_config:
  headers:
    X-Content-Type-Options: nosniff
basic_auth_users:
  prometheus: $hash
EOF
    exporter_args+=(--web.config.file "$WORK_DIR/web-config.yml")
    EXPORTER_URL=https://127.0.0.1:$EXPORTER_PORT
    exporter_access=("$WORK_DIR/ca.crt" prometheus "$SCRAPE_PASSWORD")
fi
# Byte counters need the kernel's accounting, which is per network namespace.
echo 1 >/proc/sys/net/netfilter/nf_conntrack_acct
"$EXPORTER_BIN" "${exporter_args[@]}" >"$WORK_DIR/exporter.log" 2>&1 &
exporter_pid=$!
background_pids+=("$exporter_pid")
wait_for_http "$EXPORTER_URL/" 30 "${exporter_access[@]}"
wait_for_http "$EXPORTER_URL/metrics" 10 "${exporter_access[@]}"
if [[ $TLS == 1 ]]; then
    step "web configuration: refusals"
    expect_status() { # EXPECTED WHAT URL [CA_FILE USER PASSWORD]
        local status
        status=$(http_status "${@:3}")
        [[ $status == "$1" ]] || { echo "$2: expected $1, got $status" >&2; exit 1; }
    }
    expect_status 401 "no credentials" "$EXPORTER_URL/metrics" "$WORK_DIR/ca.crt"
    expect_status 401 "a wrong password" "$EXPORTER_URL/metrics" "$WORK_DIR/ca.crt" prometheus wrong
    plain=$(http_status "http://127.0.0.1:$EXPORTER_PORT/metrics")
    [[ $plain != 200 ]] || { echo "plain HTTP on the TLS port served the metrics" >&2; exit 1; }
fi

step "traffic: $HELD_CONNECTIONS held open, some closed, one attempt that gets no answer"
"$PYTHON" - "$PEER_ADDRESS" "$PEER_PORT" "$HELD_CONNECTIONS" "$SILENT_ADDRESS" >"$WORK_DIR/traffic.log" 2>&1 <<'EOF' &
import socket, sys, time, urllib.request
peer, port, held, silent = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
# Closed connections: the kernel keeps them in TIME_WAIT for a while.
for _ in range(3):
    urllib.request.urlopen(f"http://{peer}:{port}/", timeout=5).read()
# Open connections, kept until the test ends.
sockets = [socket.create_connection((peer, port), timeout=5) for _ in range(held)]
# A handshake that never completes: nothing answers ARP for this address, so
# the connection stays in SYN_SENT while the kernel retries.
attempt = socket.socket()
attempt.setblocking(False)
attempt.connect_ex((silent, 9))
print("traffic ready", flush=True)
time.sleep(3600)
EOF
background_pids+=("$!")

step "prometheus: scraping every second, rule files loaded"
cat >"$WORK_DIR/critical-hosts.yaml" <<EOF
groups:
  - name: conntrack-exporter-critical-hosts
    rules:
      - record: conntrack_exporter:critical_host
        expr: vector(1)
        labels:
          host: "$PEER_ADDRESS"
EOF
scrape_access=""
if [[ $TLS == 1 ]]; then
    scrape_access="    scheme: https
    tls_config:
      ca_file: $WORK_DIR/ca.crt
    basic_auth:
      username: prometheus
      password_file: $WORK_DIR/scrape.password"
fi
cat >"$WORK_DIR/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $DEPLOY_DIR/prometheus/alerts.yaml
  - $WORK_DIR/critical-hosts.yaml
scrape_configs:
  - job_name: conntrack-exporter
    scrape_timeout: 1s
$scrape_access
    static_configs:
      - targets: ["127.0.0.1:$EXPORTER_PORT"]
EOF
prometheus --config.file="$WORK_DIR/prometheus.yml" --storage.tsdb.path="$WORK_DIR/tsdb" \
    --web.listen-address=127.0.0.1:9090 --log.level=warn >"$WORK_DIR/prometheus.log" 2>&1 &
background_pids+=("$!")
wait_for_http "$PROMETHEUS_URL/-/ready" 60
"$PYTHON" "$DEPLOY_DIR/lib/e2e_prometheus.py" wait "$PROMETHEUS_URL" 10 90
kill -0 "$exporter_pid" || { echo "the exporter exited" >&2; exit 1; }

step "queries: dashboard and rules through /api/v1/query"
cat >"$WORK_DIR/expectations.json" <<EOF
[
  {"query": "conntrack_exporter_build_info{job=\"conntrack-exporter\"}", "min": 1},
  {"query": "conntrack_open_connections_total{host=\"$PEER_ADDRESS\"}", "min": $HELD_CONNECTIONS},
  {"query": "conntrack_closing_connections_total{host=\"$PEER_ADDRESS\"}", "min": 1},
  {"query": "conntrack_closed_connections_total{host=\"$PEER_ADDRESS\"}", "min": 0},
  {"query": "conntrack_opening_connections_total{host=\"$SILENT_ADDRESS\"}", "min": 1},
  {"query": "conntrack_exporter_hosts", "min": 2},
  {"query": "conntrack_connections_opened_total{host=\"$PEER_ADDRESS\"}", "min": $HELD_CONNECTIONS},
  {"query": "conntrack_sent_bytes_total{host=\"$PEER_ADDRESS\"}", "min": 1},
  {"query": "conntrack_received_bytes_total{host=\"$PEER_ADDRESS\"}", "min": 1},
  {"query": "sum(conntrack_exporter_kernel_stat_total)", "min": 0},
  {"query": "conntrack_exporter_connections", "min": $HELD_CONNECTIONS},
  {"query": "conntrack_exporter_kernel_table_limit", "min": 1},
  {"query": "conntrack_exporter_kernel_table_entries", "min": 1},
  {"query": "sum(conntrack_exporter_resyncs_total{reason=\"startup\"})", "min": 1},
  {"query": "sum(conntrack_exporter_resyncs_total{reason=\"periodic\"})", "min": 1},
  {"query": "sum(conntrack_exporter_events_total)", "min": 1},
  {"query": "conntrack_exporter:critical_host", "min": 1}
]
EOF
"$PYTHON" "$DEPLOY_DIR/lib/e2e_prometheus.py" verify "$PROMETHEUS_URL" "$WORK_DIR/expectations.json" \
    "$DEPLOY_DIR/grafana/conntrack-exporter.json" \
    "$DEPLOY_DIR/prometheus/alerts.yaml" "$WORK_DIR/critical-hosts.yaml"

step "end-to-end test passed"
