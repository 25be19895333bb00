#!/usr/bin/env bash
# Checks the Freshdesk contract both ways: the requests deskpilot's Freshdesk client sends and the
# responses of the sandbox's Freshdesk flavour are validated by Prism's proxy against the
# unofficial Freshdesk OpenAPI description (its paths have no /api/v2 prefix, so Prism forwards
# to the flavour's /freshdesk/api/v2). Where that description disagrees with Freshdesk's own
# documentation the documentation is followed, and those violations are expected:
#   - ticket_fields `choices` of the status field: an object of status ids (documented), not an array;
#   - the 404 of an unknown ticket: no JSON body is promised by the documentation.
#
# Usage: scripts/freshdesk-contract-check.sh [SPEC]
#   SPEC defaults to ../shared/ref/specs/freshdesk/freshdesk-rest-api-openapi.yml
# Needs node + npm (Prism is installed under target/prism on first use).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
spec=${1:-$root/../shared/ref/specs/freshdesk/freshdesk-rest-api-openapi.yml}
name=freshdesk-contract-check
example=freshdesk_contract
sandbox_port=${SANDBOX_PORT:-18581}
prism_port=${PRISM_PORT:-18510}
# shellcheck source=scripts/prism-lib.sh
source "$root/scripts/prism-lib.sh"

# Without --errors Prism forwards every answer and logs each violation, so one run lists them all.
"$prism" proxy "$spec" "http://127.0.0.1:$sandbox_port/freshdesk/api/v2" --port "$prism_port" >"$logs/prism.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$prism_port/" prism "$logs/prism.log"

"$target/debug/examples/freshdesk_contract" "http://127.0.0.1:$prism_port" contract
violations=$(grep -a -i "violation" "$logs/prism.log" \
  | grep -v -E 'choices Response body property [0-9]+\.choices must be array' \
  | grep -v -E 'received media type "" does not match|response\.body Response body must be object' \
  | grep -v 'request Selected route not found' || true) # the latter: wait_for's probe of /
if [ -n "$violations" ]; then
  echo "freshdesk-contract-check: Prism logged violations:" >&2
  echo "$violations" | head -40 >&2
  exit 1
fi
echo "freshdesk-contract-check: requests and responses conform to $(basename "$spec") (but for the documented differences above)"
