#!/usr/bin/env bash
# Checks the ServiceNow contract both ways: the requests deskpilot's ServiceNow client sends and
# the responses of the sandbox's ServiceNow flavour are validated by Prism's proxy against the
# unofficial Table API description (its paths start at /table, so Prism forwards to the flavour's
# /servicenow/api/now). ServiceNow publishes no description of its own (each instance can export
# one); where this one disagrees with ServiceNow's documentation the documentation is followed,
# and those violations are expected:
#   - sys_created_on / sys_updated_on are `YYYY-MM-DD HH:MM:SS` in UTC (documented for actual
#     values, platforms.md §4.2); the description types them `format: date-time` (RFC 3339).
#
# Usage: scripts/servicenow-contract-check.sh [SPEC]
#   SPEC defaults to ../shared/ref/specs/servicenow/servicenow-table-records-api-openapi.yml
# Needs node + npm (Prism is installed under target/prism on first use).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
spec=${1:-$root/../shared/ref/specs/servicenow/servicenow-table-records-api-openapi.yml}
name=servicenow-contract-check
example=servicenow_contract
sandbox_port=${SANDBOX_PORT:-18781}
prism_port=${PRISM_PORT:-18710}
# shellcheck source=scripts/prism-lib.sh
source "$root/scripts/prism-lib.sh"

# Without --errors Prism forwards every answer and logs each violation, so one run lists them all.
"$prism" proxy "$spec" "http://127.0.0.1:$sandbox_port/servicenow/api/now" --port "$prism_port" >"$logs/prism.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$prism_port/" prism "$logs/prism.log"

"$target/debug/examples/servicenow_contract" "http://127.0.0.1:$prism_port" deskpilot.integration contract
violations=$(grep -a -i "violation" "$logs/prism.log" \
  | grep -v -E 'sys_(created|updated)_on must match format "date-time"' \
  | grep -v 'request Selected route not found' || true) # the latter: wait_for's probe of /
if [ -n "$violations" ]; then
  echo "servicenow-contract-check: Prism logged violations:" >&2
  echo "$violations" | head -40 >&2
  exit 1
fi
echo "servicenow-contract-check: requests and responses conform to $(basename "$spec") (but for the documented differences above)"
