#!/usr/bin/env bash
# End-to-end test of the monitoring setup: a real Prometheus scrapes the
# running exporter, loads the alert rules, and answers every query of the
# Grafana dashboard and of the rules.
#
# Usage: deploy/e2e.sh PATH/TO/conntrack_exporter
#
# Needs root: everything runs in a private network namespace (its own,
# empty conntrack table, and ports nobody else uses), with a second
# namespace as the remote peer on a veth link (198.51.100.0/24, a
# documentation range that never leaves this machine). Needs the Debian
# package prometheus (installed when missing) and iproute2.
#
# What it does:
#   1. starts the exporter with a temporary config (--config, loopback,
#      tracking switched on in the namespace, 5s resyncs, accounting on);
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

if [[ $(id -u) -ne 0 ]]; then
    echo "$0 needs root: it creates network namespaces and the exporter needs CAP_NET_ADMIN" >&2
    exit 2
fi
if ! command -v prometheus >/dev/null || ! command -v ip >/dev/null; then
    # policy-rc.d keeps the package's own Prometheus service from starting.
    created_policy=no
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        created_policy=yes
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus iproute2 >/dev/null
    [[ $created_policy == yes ]] && rm -f /usr/sbin/policy-rc.d
fi

# Re-run inside a new network namespace; it disappears with the last
# process in it.
if [[ -z ${CONNTRACK_E2E_IN_NETNS:-} ]]; then
    exec unshare --net env CONNTRACK_E2E_IN_NETNS=1 bash "${BASH_SOURCE[0]}" "$EXPORTER_BIN"
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

wait_for_http() { # URL SECONDS
    local url=$1 deadline=$((SECONDS + $2))
    until "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$url" 2>/dev/null; do
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
# Byte counters need the kernel's accounting, which is per network namespace.
echo 1 >/proc/sys/net/netfilter/nf_conntrack_acct
"$EXPORTER_BIN" --config "$WORK_DIR/exporter.toml" >"$WORK_DIR/exporter.log" 2>&1 &
exporter_pid=$!
background_pids+=("$exporter_pid")
wait_for_http "http://127.0.0.1:$EXPORTER_PORT/" 30
wait_for_http "http://127.0.0.1:$EXPORTER_PORT/metrics" 10

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
