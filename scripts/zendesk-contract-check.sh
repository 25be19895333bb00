#!/usr/bin/env bash
# Checks the Zendesk contract both ways: the requests deskpilot's Zendesk client sends and the
# responses of the sandbox's Zendesk flavour are validated by Prism's proxy against Zendesk's own
# OpenAPI description (its paths have no `.json` suffix, as the client sends them; Prism forwards
# to the flavour's /zendesk). Where the description disagrees with Zendesk's documentation the
# documentation is followed, and those violations are expected:
#   - ticket `custom_fields` entries are `{id, value}` (documented); the description reuses the
#     custom field *definition* schema, which requires key, type and title;
#   - PUT /api/v2/tickets/{id}/tags takes `{"tags": [...]}` (documented); the description has no body;
#   - the 404 of an unknown ticket: the description declares only 200.
#
# Usage: scripts/zendesk-contract-check.sh [SPEC]
#   SPEC defaults to ../shared/ref/specs/zendesk/zendesk-support-oas.yaml
# Needs node + npm (Prism is installed under target/prism on first use).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
spec=${1:-$root/../shared/ref/specs/zendesk/zendesk-support-oas.yaml}
name=zendesk-contract-check
example=zendesk_contract
sandbox_port=${SANDBOX_PORT:-18681}
prism_port=${PRISM_PORT:-18610}
# shellcheck source=scripts/prism-lib.sh
source "$root/scripts/prism-lib.sh"

# Without --errors Prism forwards every answer and logs each violation, so one run lists them all.
"$prism" proxy "$spec" "http://127.0.0.1:$sandbox_port/zendesk" --port "$prism_port" >"$logs/prism.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$prism_port/" prism "$logs/prism.log"

"$target/debug/examples/zendesk_contract" "http://127.0.0.1:$prism_port" contract 360000000001
violations=$(grep -a -i "violation" "$logs/prism.log" \
  | grep -v -E "custom_fields\.[0-9]+ must have required property '(key|type|title)'" \
  | grep -v 'request No supported content types, but request included a non-empty body' \
  | grep -v 'Unable to match the returned status code' \
  | grep -v 'request Selected route not found' || true) # the latter: wait_for's probe of /
if [ -n "$violations" ]; then
  echo "zendesk-contract-check: Prism logged violations:" >&2
  echo "$violations" | head -40 >&2
  exit 1
fi
echo "zendesk-contract-check: requests and responses conform to $(basename "$spec") (but for the documented differences above)"
