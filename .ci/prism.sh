#!/usr/bin/env bash
# Replay the recorded session (.ci/session.sh: every README curl example, success and error
# cases) through Prism's validation proxy in front of a running service, and fail on any
# violation of openapi.yaml.
# Usage: .ci/prism.sh BASE_URL [KEY]     (KEY: a partner key of that service; default $KEY)
#
# How Prism reports, with --errors (checked with Prism 5.14): a response that breaks the
# contract comes back as 500 application/problem+json (type …#VIOLATIONS) with the violations
# in an `sl-violations` header; a request that breaks it is not forwarded and gets 422
# application/problem+json (type …#UNPROCESSABLE_ENTITY) listing them in "validation". So a
# call passes when it has no sl-violations header, is no problem+json from Prism, and has the
# status the session names. A request the session marks `request-violation` (it breaks the
# contract on purpose, e.g. a text/plain body) must get Prism's 422 instead, and is then sent
# straight to the service, which must answer the named status with an {"error","message"} body.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=.ci/npm.sh
. .ci/npm.sh
prism_version=5.14.2 # the newest Prism that runs on Node 20 (5.15+ want Node 24)
spec=openapi.yaml

upstream=${1:?usage: .ci/prism.sh BASE_URL [KEY]}
upstream=${upstream%/}
key=${2:-${KEY:-}}
fail() { echo "prism: FAIL: $*" >&2; exit 1; }
[ -n "$key" ] || fail "no partner key: pass it as the second argument or in KEY"
for c in curl jq; do command -v "$c" >/dev/null || fail "$c is missing"; done

bin=$(npm_tool prism @stoplight/prism-cli "$prism_version") || fail "could not install Prism"
work=$(mktemp -d /tmp/tokensvc-prism.XXXXXX)
prism_pid=
cleanup() {
  local rc=$?
  set +e
  if [ -n "$prism_pid" ]; then
    kill "$prism_pid" 2>/dev/null
    wait "$prism_pid" 2>/dev/null
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

code=$(command curl -sS -o "$work/served.yaml" -w '%{http_code}' "$upstream/openapi.yaml") ||
  fail "the service at $upstream does not answer"
[ "$code" = 200 ] || fail "GET $upstream/openapi.yaml: $code"
cmp -s "$work/served.yaml" "$spec" ||
  echo "prism: warning: the service serves another openapi.yaml than $spec; checking against $spec" >&2

# A free loopback port: nothing answers on it (Prism's own start fails loudly if it was taken since).
port=
for _ in $(seq 1 50); do
  p=$((20000 + RANDOM % 40000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p && break; fi
done
[ -n "$port" ] || fail "no free port"
proxy=http://127.0.0.1:$port

start=$SECONDS
"$bin/prism" proxy "$spec" "$upstream" --errors --host 127.0.0.1 --port "$port" >"$work/prism.log" 2>&1 &
prism_pid=$!
for _ in $(seq 1 240); do
  grep -q 'Prism is listening' "$work/prism.log" && break
  kill -0 "$prism_pid" 2>/dev/null || { cat "$work/prism.log" >&2; prism_pid=; fail "Prism exited"; }
  sleep 0.25
done
grep -q 'Prism is listening' "$work/prism.log" || { cat "$work/prism.log" >&2; fail "Prism did not start in 60 s"; }
echo "prism: Prism $("$bin/prism" --version) proxies $proxy -> $upstream with $spec (up in $((SECONDS - start)) s)"

# The session's `status CODE WHAT [request-violation]` names what the next curl must get.
want='' what='' mode=''
status() { want=$1 what=$2 mode=${3:-}; }

# curl ARGS…: run the session's curl through the proxy, print the body as curl would, and
# record a verdict in $work/results (a file: TOKEN=$(curl …) runs in a subshell).
curl() {
  local hdr body code violations ctype verdict=ok why=
  hdr=$(mktemp "$work/h.XXXXXX") body=$(mktemp "$work/b.XXXXXX")
  code=$(command curl -sS -D "$hdr" -o "$body" -w '%{http_code}' "$@" 2>>"$work/curl.err") || code=000
  cat "$body"
  violations=$(sed -n 's/^sl-violations: *//Ip' "$hdr" | tr -d '\r')
  ctype=$(sed -n 's/^content-type: *//Ip' "$hdr" | tr -d '\r' | tail -n 1)
  if [ -n "$violations" ]; then
    verdict=FAIL why="Prism: $violations"
  elif [ "$mode" = request-violation ]; then
    if [ "$code" != 422 ] || [[ $ctype != application/problem+json* ]] ||
      ! jq -e '.type | endswith("UNPROCESSABLE_ENTITY")' "$body" >/dev/null 2>&1; then
      verdict=FAIL why="Prism did not refuse a request that breaks the contract: $code $(head -c 300 "$body")"
    else
      why="Prism refused it: $(jq -c '[.validation[].message]' "$body")"
      direct "$@" || verdict=FAIL
    fi
  elif [[ $ctype == application/problem+json* ]]; then
    verdict=FAIL why="Prism: $code $(head -c 400 "$body")"
  elif [ "$code" != "$want" ]; then
    verdict=FAIL why="status $code, want $want: $(head -c 300 "$body")"
  fi
  printf '%-4s %s %s%s\n' "$verdict" "$code" "$what" "${why:+ -- $why}" | tee -a "$work/results" >&3
}

# direct ARGS…: send a call to the service itself instead of the proxy; it must answer $want
# with a JSON error object. Appends to $why.
direct() {
  local args=() a code
  for a in "$@"; do
    [[ $a == "$proxy"* ]] && a=$upstream${a#"$proxy"}
    args+=("$a")
  done
  code=$(command curl -sS -o "$work/direct" -w '%{http_code}' "${args[@]}" 2>>"$work/curl.err") || code=000
  if [ "$code" = "$want" ] &&
    jq -e 'type == "object" and (keys == ["error", "message"]) and (.error | type == "string") and (.message | type == "string")' \
      "$work/direct" >/dev/null 2>&1; then
    why+="; the service answers $code $(cat "$work/direct")"
  else
    why+="; the service answers $code, want $want with {error,message}: $(head -c 300 "$work/direct")"
    return 1
  fi
}

exec 3>&1
: >"$work/results"
export BASE=$proxy KEY=$key
# shellcheck source=.ci/session.sh
. .ci/session.sh >"$work/bodies" 2>&1
exec 3>&-

calls=$(grep -c '^status ' .ci/session.sh)
passed=$(grep -c '^ok ' "$work/results" || true)
failed=$(grep -c '^FAIL ' "$work/results" || true)
if [ $((passed + failed)) -ne "$calls" ]; then
  echo "prism: the session has $calls calls but $((passed + failed)) ran" >&2
  failed=$((failed + calls - passed - failed))
fi
if [ "$failed" -ne 0 ]; then
  echo "-- Prism's errors and warnings:" >&2
  grep -E 'error|warn|Violation' "$work/prism.log" | sed 's/^/   /' >&2 || true
  [ -s "$work/curl.err" ] && { echo "-- curl:" >&2; cat "$work/curl.err" >&2; }
fi
echo "prism: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
