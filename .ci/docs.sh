#!/usr/bin/env bash
# Check the API reference page as a browser sees it: load URL/docs in headless Chromium,
# let Redoc fetch and render URL/openapi.yaml, and assert that the rendered page lists
# every endpoint (its path and the summary the spec gives it).
# Usage: .ci/docs.sh URL      (e.g. .ci/docs.sh http://127.0.0.1:8080)
# Env: DOCS_SCREENSHOT=FILE.png also saves a screenshot of the page.
# Installs Debian's chromium if it is missing (as root). Needs curl.
set -euo pipefail
base=${1:?usage: .ci/docs.sh URL}
base=${base%/}
# The endpoints that the page must list. Their summaries are read from the served spec.
paths=(/generate /verify /healthz /readyz /openapi.yaml)

fail() { echo "docs: FAIL: $*" >&2; exit 1; }
command -v curl >/dev/null || fail "curl is missing"

if ! command -v chromium >/dev/null; then
  echo "docs: installing chromium (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/tmp/tokensvc-docs-apt.log 2>&1 ||
    { tail -n 30 /tmp/tokensvc-docs-apt.log >&2; fail "apt-get install chromium"; }
fi

work=$(mktemp -d /tmp/tokensvc-docs.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The page, the script it loads and the spec must be there before a browser is worth starting.
status() { curl -sSL -o "$2" -w '%{http_code} %{content_type}' "$1"; }
got=$(status "$base/docs" "$work/page.html") || fail "GET $base/docs: curl failed"
[[ $got == "200 text/html"* ]] || fail "GET /docs: want 200 text/html, got '$got'"
script=$(sed -n 's/.*<script[^>]* src="\([^"]*\)".*/\1/p' "$work/page.html" | head -n 1)
[ -n "$script" ] || fail "GET /docs: the page loads no script"
case $script in
/*) ;;
*) fail "GET /docs: the script '$script' is not served by this server (no CDN, no relative path)" ;;
esac
got=$(status "$base$script" /dev/null)
[[ $got == "200 text/javascript"* || $got == "200 application/javascript"* ]] ||
  fail "GET $script: want 200 and a JavaScript type, got '$got'"
got=$(status "$base/openapi.yaml" "$work/openapi.yaml")
[[ $got == 200* ]] || fail "GET /openapi.yaml: want 200, got '$got'"

# Operation summaries, as written in the spec (operations sit at 4 spaces, their keys at 6).
mapfile -t summaries < <(sed -n 's/^      summary: *//p' "$work/openapi.yaml" | sed -e "s/^'\(.*\)'\$/\1/" -e 's/^"\(.*\)"$/\1/')
[ "${#summaries[@]}" -ge "${#paths[@]}" ] ||
  fail "found ${#summaries[@]} operation summaries in /openapi.yaml, want at least ${#paths[@]}"

flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
  --disable-background-networking --disable-component-update --disable-sync
  --user-data-dir="$work/profile" "--window-size=1280,900" --virtual-time-budget=10000)
start=$SECONDS
timeout 120 chromium "${flags[@]}" --dump-dom "$base/docs" >"$work/dom.html" 2>"$work/chromium.log" ||
  { tail -n 20 "$work/chromium.log" >&2; fail "chromium exited with $?"; }
if [ -n "${DOCS_SCREENSHOT:-}" ]; then
  timeout 120 chromium "${flags[@]}" --screenshot="$DOCS_SCREENSHOT" "$base/docs" >/dev/null 2>&1 ||
    echo "docs: warning: no screenshot" >&2
fi
echo "docs: chromium rendered $base/docs in $((SECONDS - start)) s ($(wc -c <"$work/dom.html") bytes of DOM)"

# The rendered text, one trimmed line per text node, so that a match is a whole label.
sed -e 's/<[^>]*>/\n/g' "$work/dom.html" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' |
  sed -e 's/&amp;/\&/g' -e 's/&lt;/</g' -e 's/&gt;/>/g' -e 's/&quot;/"/g' -e "s/&#39;/'/g" |
  grep -v '^$' >"$work/text" || true

shown() { grep -qxF -- "$1" "$work/text"; }
missing=()
for p in "${paths[@]}"; do shown "$p" || missing+=("path $p"); done
for s in "${summaries[@]}"; do shown "$s" || missing+=("summary '$s'"); done
if [ "${#missing[@]}" -gt 0 ] || grep -qi 'something went wrong' "$work/text"; then
  echo "docs: the rendered page (first 60 lines of text):" >&2
  head -n 60 "$work/text" >&2
  fail "not listed on the page: ${missing[*]:-(none; Redoc reported an error)}"
fi
printf 'docs: listed: %s\n' "${paths[@]}" "${summaries[@]}"
echo "docs: all checks passed"
