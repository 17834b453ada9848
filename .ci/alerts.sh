#!/usr/bin/env bash
# The alerting rules against the real thing: promtool checks and unit-tests
# examples/prometheus/alerts.yml, then Debian's Prometheus scrapes a running
# tokensvc (Redis-backed, a local redis-server on a unix socket), Redis is
# stopped, TokensvcStoreUnavailable must go to firing in /api/v1/alerts
# within the time its rule promises (its for: plus a scrape and an
# evaluation interval, and a little slack), and it must resolve once Redis
# is back. Scrapes and evaluations every 2s, so it takes about a minute.
# Usage: .ci/alerts.sh [TOKENSVC_BINARY]   (built from ./cmd/tokensvc when absent)
# Needs prometheus, promtool, redis-server, curl, jq; stops all it started.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
need() { command -v "$1" >/dev/null || { echo "alerts: $1 is missing (apt-get install prometheus redis-server curl jq)" >&2; exit 1; }; }
need prometheus; need promtool; need redis-server; need curl; need jq

rules=$top/examples/prometheus/alerts.yml
alert=TokensvcStoreUnavailable
interval=2 # seconds between scrapes, and between evaluations
slack=8    # seconds: a ping's timeout, process start-up, polling

work=$(mktemp -d /tmp/tokensvc-alerts.XXXXXX)
redis_pid= svc_pid= prom_pid=
stop() { # stop PID: SIGTERM, then wait for it
  [ -n "$1" ] || return 0
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  set +e
  if [ "$rc" -ne 0 ]; then
    for f in svc.log prometheus.log redis.log; do
      [ -f "$work/$f" ] && { echo "-- $f (last 30 lines):"; tail -n 30 "$work/$f"; }
    done
  fi
  stop "$prom_pid"; stop "$svc_pid"; stop "$redis_pid"
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
fail() { echo "alerts: FAIL: $*" >&2; exit 1; }

echo "-- promtool check rules, promtool test rules"
promtool check rules "$rules"
(cd "$(dirname "$rules")" && promtool test rules alerts_test.yml)

# The rule's promise: firing within for + one scrape + one evaluation.
for_s=$(awk -v a="$alert" '$0 ~ "alert: "a"$" {f=1; next} f && /for:/ {v=$2; sub(/s$/, "", v); print v; exit} f && /alert:/ {exit}' "$rules")
[[ "$for_s" =~ ^[0-9]+$ ]] || fail "could not read the for: of $alert in $rules (seconds expected, got '$for_s')"
fire_within=$((for_s + 2 * interval + slack))
resolve_within=$((2 * interval + slack))

bin=${1:-}
if [ -z "$bin" ]; then
  bin=$work/tokensvc
  go build -o "$bin" ./cmd/tokensvc
fi

sock=$work/redis.sock
start_redis() {
  # AOF in the work directory: a Redis that comes back has its data back.
  redis-server --port 0 --unixsocket "$sock" --unixsocketperm 700 --dir "$work" --appendonly yes \
    --save '' --daemonize no >>"$work/redis.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 1 100); do
    [ -S "$sock" ] && redis-cli -s "$sock" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail "redis-server did not start"
}
start_redis
export TOKENSVC_REDIS_URL=unix://$sock TOKENSVC_REDIS_PREFIX=alerts: TOKENSVC_STORE_TIMEOUT=500ms
"$bin" migrate >/dev/null
TOKENSVC_ADDR=127.0.0.1:0 TOKENSVC_API_KEYS=alerts-$$ "$bin" >"$work/svc.log" 2>&1 &
svc_pid=$!
addr=
for _ in $(seq 1 100); do
  addr=$(sed -n 's/.*"msg":"listening","addr":"\([^"]*\)".*/\1/p' "$work/svc.log" | head -n 1)
  [ -n "$addr" ] && break
  kill -0 "$svc_pid" 2>/dev/null || fail "tokensvc exited"
  sleep 0.1
done
[ -n "$addr" ] || fail "tokensvc did not start"
echo "tokensvc on $addr, Redis on $sock"

# A free port for Prometheus: one nothing answers on.
port=
for _ in $(seq 1 50); do
  p=$((20000 + RANDOM % 20000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || fail "no free port for Prometheus"
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: ${interval}s
  scrape_timeout: ${interval}s
  evaluation_interval: ${interval}s
rule_files:
  - $rules
scrape_configs:
  - job_name: tokensvc
    static_configs:
      - targets: ['$addr']
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$port" >"$work/prometheus.log" 2>&1 &
prom_pid=$!
api=http://127.0.0.1:$port/api/v1

# state: the alert's state in Prometheus (firing, pending), or "inactive".
state() {
  curl -fsS "$api/alerts" | jq -r --arg a "$alert" \
    '[.data.alerts[] | select(.labels.alertname == $a) | .state] | if length == 0 then "inactive" elif index("firing") then "firing" else .[0] end'
}
# store_up: the last scraped tokensvc_store_up, or "none".
store_up() {
  curl -fsS "$api/query" --data-urlencode 'query=tokensvc_store_up' | jq -r '.data.result[0].value[1] // "none"'
}

for _ in $(seq 1 150); do
  [ "$(store_up 2>/dev/null)" = 1 ] && break
  kill -0 "$prom_pid" 2>/dev/null || fail "prometheus exited"
  sleep 0.2
done
[ "$(store_up)" = 1 ] || fail "Prometheus never scraped tokensvc_store_up 1"
[ "$(state)" = inactive ] || fail "$alert is $(state) while Redis is up"
echo "Prometheus on :$port scrapes tokensvc_store_up 1; $alert inactive; it promises to fire within ${fire_within}s (for: ${for_s}s)"

echo "-- stop Redis"
stop "$redis_pid"; redis_pid=
t0=$SECONDS
seen_pending=
while :; do
  s=$(state)
  [ "$s" = pending ] && seen_pending=1
  [ "$s" = firing ] && break
  [ $((SECONDS - t0)) -le "$fire_within" ] || fail "$alert not firing ${fire_within}s after Redis stopped (state: $s)"
  sleep 1
done
fired=$((SECONDS - t0))
[ -n "$seen_pending" ] || fail "$alert fired without being pending first"
[ "$fired" -ge "$for_s" ] || fail "$alert fired after ${fired}s, before its for: of ${for_s}s"
echo "firing ${fired}s after Redis stopped (promised: within ${fire_within}s)"
curl -fsS "$api/alerts" | jq -c --arg a "$alert" '.data.alerts[] | select(.labels.alertname == $a) | {labels, state, activeAt}'

echo "-- start Redis again"
start_redis
t1=$SECONDS
while [ "$(state)" != inactive ]; do
  [ $((SECONDS - t1)) -le "$resolve_within" ] || fail "$alert still $(state) ${resolve_within}s after Redis came back"
  sleep 1
done
echo "resolved $((SECONDS - t1))s after Redis came back (within ${resolve_within}s)"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/readyz")
[ "$code" = 200 ] || fail "/readyz answers $code after Redis came back"
echo "alerts: ok"
