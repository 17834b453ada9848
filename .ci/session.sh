# shellcheck shell=bash
# A recorded session: every curl example of README.md, success and error cases, as plain curl
# with $BASE (the service, or a proxy in front of it) and $KEY (a partner key).
#
# By hand:  BASE=http://localhost:8080 KEY=dev_… bash .ci/session.sh
# In CI, .ci/prism.sh replays it through Prism's validation proxy: it defines `curl` to check
# every answer against openapi.yaml, and `status CODE WHAT` before each call names the status
# the call must get (`status CODE WHAT request-violation` marks a request that breaks the
# contract on purpose). Run by hand, `status` only prints WHAT.
: "${BASE:?set BASE, e.g. http://localhost:8080}" "${KEY:?set KEY to a partner key}"
type status >/dev/null 2>&1 || status() { printf '\n# %s (want %s)\n' "$2" "$1"; }

status 200 "mint a token for a bundle of parameters (JSON)"
curl -s -X POST "$BASE/generate" \
  -H "x-api-key: $KEY" -H 'Content-Type: application/json' \
  -d '{"auth":"apiKey","file":"/drawings/1.dwg","userId":"u-42","server":"eu-1"}'

status 200 "the same, keeping the token, with a 10-minute lifetime"
TOKEN=$(curl -s -X POST "$BASE/generate?ttl=600" \
  -H "x-api-key: $KEY" -H 'Content-Type: application/json' \
  -d '{"auth":"apiKey","file":"/drawings/1.dwg","userId":"u-42","server":"eu-1"}' |
  sed -E 's/.*"token":"([^"]+)".*/\1/')

status 200 "read the bundle back, as the editor does (x-api-token)"
curl -s "$BASE/verify" -H "x-api-token: $TOKEN"

status 200 "the same with Authorization: Bearer"
curl -s "$BASE/verify" -H "Authorization: Bearer $TOKEN"

status 200 "a login-style client sends a form"
curl -s -X POST "$BASE/generate" -H "x-api-key: $KEY" \
  -d 'userId=u-42&file=/drawings/1.dwg'

status 403 "a bad token"
curl -s "$BASE/verify" -H 'x-api-token: nope'

status 403 "a wrong partner key"
curl -s -X POST "$BASE/generate" -H 'x-api-key: wrong' -d '{}'

status 400 "a ttl over the maximum (24 h)"
curl -s -X POST "$BASE/generate?ttl=100000" \
  -H "x-api-key: $KEY" -H 'Content-Type: application/json' -d '{"userId":"u-42"}'

status 415 "a body that is neither JSON nor a form" request-violation
curl -s -X POST "$BASE/generate" \
  -H "x-api-key: $KEY" -H 'Content-Type: text/plain' -d 'userId=u-42'

status 200 "liveness"
curl -s "$BASE/healthz"

status 200 "readiness"
curl -s "$BASE/readyz"

status 200 "the contract"
curl -s "$BASE/openapi.yaml"

status 200 "single use with a reload grace, the partner's own key kept from the browser"
TOKEN=$(curl -s -X POST "$BASE/generate?uses=1&reuse_grace=10&private=auth" \
  -H "x-api-key: $KEY" -H 'Content-Type: application/json' \
  -d '{"auth":"apiKey","file":"/drawings/1.dwg","userId":"u-42"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')

status 200 "the browser sees the public fields"
curl -s "$BASE/verify" -H "x-api-token: $TOKEN"

status 200 "the minting partner sees every field, within the grace"
curl -s "$BASE/verify" -H "x-api-token: $TOKEN" -H "x-api-key: $KEY"

status 200 "a single-use token without grace"
ONCE=$(curl -s -X POST "$BASE/generate?uses=1" -H "x-api-key: $KEY" -H 'Content-Type: application/json' \
  -d '{"userId":"u-42"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')

status 200 "its one use"
curl -s "$BASE/verify" -H "x-api-token: $ONCE"

status 403 "used up"
curl -s "$BASE/verify" -H "x-api-token: $ONCE"

status 200 "a token to look at, refresh and revoke"
RES=$(curl -s -X POST "$BASE/generate" -H "x-api-key: $KEY" -H 'Content-Type: application/json' -d '{"userId":"u-42"}')
TOKEN=$(echo "$RES" | sed -E 's/.*"token":"([^"]+)".*/\1/'); ID=$(echo "$RES" | sed -E 's/.*"token_id":"([^"]+)".*/\1/')

status 200 "its metadata"
curl -s "$BASE/tokens/$ID" -H "x-api-key: $KEY"

status 200 "refresh it"
NEW=$(curl -s -X POST "$BASE/refresh" -H "x-api-token: $TOKEN" | sed -E 's/.*"token":"([^"]+)".*/\1/')

status 403 "the old one ended"
curl -s "$BASE/verify" -H "x-api-token: $TOKEN"

status 200 "batch verify"
curl -s -X POST "$BASE/verify/batch" -H 'Content-Type: application/json' -d "{\"tokens\":[\"$NEW\",\"$TOKEN\"]}"

status 204 "revoke the new one"
curl -s -X DELETE "$BASE/tokens/$(printf %s "$NEW" | sha256sum | cut -c1-32)" -H "x-api-key: $KEY"

status 403 "revoked"
curl -s "$BASE/verify" -H "x-api-token: $NEW"

status 200 "the history of the old one: minted, refreshed, reused"
curl -s "$BASE/tokens/$ID" -H "x-api-key: $KEY"
