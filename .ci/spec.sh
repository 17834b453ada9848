#!/usr/bin/env bash
# Lint the OpenAPI contract with Redocly CLI (pinned; installed under .ci/work/ with npm),
# with the rules of .ci/redocly.yaml. Exits non-zero on any problem.
# Usage: .ci/spec.sh [SPEC]      (default openapi.yaml at the top of the repository)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=.ci/npm.sh
. .ci/npm.sh
redocly_version=2.77.0
spec=${1:-openapi.yaml}

bin=$(npm_tool redocly @redocly/cli "$redocly_version")
# No telemetry, no update check; the CLI's banner about Node 20's end of life is cut.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
echo "spec: Redocly CLI $("$bin/redocly" --version 2>/dev/null | tail -n 1), rules from .ci/redocly.yaml"
rc=0
"$bin/redocly" lint --config .ci/redocly.yaml --format=stylish --max-problems=1000 "$spec" \
  2> >(grep -v -e '[║╔╚]' -e '^$' >&2) || rc=$?
wait
[ "$rc" -eq 0 ] && echo "spec: $spec passes" || echo "spec: FAIL: Redocly CLI found problems in $spec (exit $rc)" >&2
exit "$rc"
