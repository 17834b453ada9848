#!/usr/bin/env bash
# Smoke-test the service image end to end: Redis on a private network, "tokensvc migrate",
# the service, then /readyz, POST /generate, GET /verify, a wrong token and a clean stop.
# Usage: .ci/smoke.sh [IMAGE] [REDIS_IMAGE]   (defaults local/tokensvc:ci, local/redis:7)
# It removes every container and network it made when it exits.
set -euo pipefail
image=${1:-local/tokensvc:ci}
redis_image=${2:-local/redis:7}
need() { command -v "$1" >/dev/null || { echo "smoke: $1 is missing" >&2; exit 1; }; }
need docker; need curl; need jq

name=tokensvc-smoke-$$
net=$name
redis=$name-redis
svc=$name-svc
work=$(mktemp -d /tmp/tokensvc-smoke.XXXXXX)

cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ] && docker container inspect "$svc" >/dev/null 2>&1; then
    echo "-- service log (last 50 lines):"
    docker logs --tail 50 "$svc" 2>&1 || true
  fi
  docker rm -f "$svc" "$redis" >/dev/null 2>&1 || true
  docker network rm "$net" >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

fail() { echo "smoke: FAIL: $*" >&2; exit 1; }

# request METHOD PATH [curl args...]: print the status code; the body goes to $work/body.
request() {
  local method=$1 path=$2
  shift 2
  curl -sS -o "$work/body" -w '%{http_code}' -X "$method" "$@" "$base$path"
}

docker network create "$net" >/dev/null
docker run -d --name "$redis" --network "$net" "$redis_image" >/dev/null
redis_url=redis://$redis:6379/0
for _ in $(seq 1 50); do
  docker logs "$redis" 2>&1 | grep -q 'Ready to accept connections' && break
  sleep 0.2
done
docker logs "$redis" 2>&1 | grep -q 'Ready to accept connections' || fail "redis did not start: $(docker logs "$redis" 2>&1 | tail -5)"
echo "redis: up ($redis)"

# Twice: migrations must be idempotent.
for i in 1 2; do
  docker run --rm --network "$net" -e TOKENSVC_REDIS_URL="$redis_url" "$image" migrate ||
    fail "tokensvc migrate (run $i) exited with $?"
done
echo "migrate: ok (twice)"

api_key=$(head -c 24 /dev/urandom | base64 | tr -dc A-Za-z0-9)
docker run -d --name "$svc" --network "$net" -p 127.0.0.1::8080 \
  -e TOKENSVC_REDIS_URL="$redis_url" -e TOKENSVC_API_KEYS="$api_key" "$image" >/dev/null
port=$(docker port "$svc" 8080/tcp | sed -n 's/^127\.0\.0\.1:\([0-9]*\)$/\1/p' | head -n 1)
[ -n "$port" ] || fail "no published port: $(docker port "$svc")"
base=http://127.0.0.1:$port
echo "service: $base"

ready=
for _ in $(seq 1 120); do
  if [ "$(docker container inspect -f '{{.State.Running}}' "$svc")" != true ]; then
    fail "service exited: $(docker container inspect -f '{{.State.ExitCode}}' "$svc")"
  fi
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz" || true)" = 200 ]; then
    ready=1
    break
  fi
  sleep 0.5
done
[ -n "$ready" ] || fail "GET /readyz did not answer 200 within 60 s"
echo "GET /readyz: 200"

# The image's HEALTHCHECK command.
docker exec "$svc" /tokensvc healthcheck || fail "/tokensvc healthcheck exited with $?"
echo "tokensvc healthcheck: ok"

bundle='{"auth":"k","file":"/a.dwg","userId":"u1","server":"s1","n":42}'
code=$(request POST /generate -H "x-api-key: $api_key" -H 'content-type: application/json' --data-binary "$bundle")
[ "$code" = 200 ] || fail "POST /generate: status $code, body: $(cat "$work/body")"
token=$(jq -er '.token | select(type == "string" and length > 0)' "$work/body") ||
  fail "POST /generate: no token in $(cat "$work/body")"
echo "POST /generate: 200, token of ${#token} characters"

code=$(request GET /verify -H "x-api-token: $token")
[ "$code" = 200 ] || fail "GET /verify: status $code, body: $(cat "$work/body")"
got=$(cat "$work/body")
if [ "${got%$'\n'}" = "$bundle" ]; then
  echo "GET /verify: 200, the bundle byte for byte"
elif jq -e --argjson want "$bundle" '. == $want' "$work/body" >/dev/null 2>&1; then
  echo "GET /verify: 200, the same JSON object (keys or spacing differ: $got)"
else
  fail "GET /verify: want $bundle, got $got"
fi

code=$(request GET /verify -H "x-api-token: wrong-$token")
[ "$code" = 403 ] || fail "GET /verify with a wrong token: want 403, got $code: $(cat "$work/body")"
echo "GET /verify with a wrong token: 403 $(cat "$work/body")"

code=$(request POST /generate -H "x-api-key: wrong-$api_key" -H 'content-type: application/json' --data-binary "$bundle")
case "$code" in
401 | 403) echo "POST /generate with a wrong API key: $code" ;;
*) fail "POST /generate with a wrong API key: want 401 or 403, got $code: $(cat "$work/body")" ;;
esac

# SIGTERM must end the service cleanly and quickly.
start=$SECONDS
docker stop -t 15 "$svc" >/dev/null
exit_code=$(docker container inspect -f '{{.State.ExitCode}}' "$svc")
[ "$exit_code" = 0 ] || fail "service exited with $exit_code on SIGTERM"
echo "docker stop: exit 0 after $((SECONDS - start)) s"
echo "smoke: all checks passed"
