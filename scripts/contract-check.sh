#!/usr/bin/env bash
# Checks the Unified.to contract both ways: the requests deskpilot's Unified client sends and the
# responses the sandbox helpdesk returns are validated by Prism (proxy mode, --errors) against
# Unified's OpenAPI description. Any violation makes Prism answer with an error, which fails the run.
#
# Usage: scripts/contract-check.sh [SPEC]
#   SPEC defaults to ../shared/ref/specs/unified/unified-to-ticketing-api-openapi.yml
# Needs node + npm (Prism is installed under target/prism on first use).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
spec=${1:-$root/../shared/ref/specs/unified/unified-to-ticketing-api-openapi.yml}
name=contract-check
example=unified_contract
sandbox_port=${SANDBOX_PORT:-18481}
prism_port=${PRISM_PORT:-18410}
# shellcheck source=scripts/prism-lib.sh
source "$root/scripts/prism-lib.sh"

"$prism" proxy "$spec" "http://127.0.0.1:$sandbox_port" --port "$prism_port" --errors >"$logs/prism.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$prism_port/" prism "$logs/prism.log"

for connection in demo acme-retail; do
  if ! "$target/debug/examples/unified_contract" "http://127.0.0.1:$prism_port" "$connection" contract; then
    echo "contract-check: violations reported by Prism:" >&2
    grep -iE "violation|error" "$logs/prism.log" | tail -40 >&2 || true
    exit 1
  fi
done
# The spec declares only 200 responses, so Prism warns that it cannot match the deliberate 404
# for an unknown ticket; every other violation fails the check.
violations=$(grep -i "violation" "$logs/prism.log" | grep -v "Unable to match the returned status code" || true)
if [ -n "$violations" ]; then
  echo "contract-check: Prism logged violations:" >&2
  echo "$violations" | head -40 >&2
  exit 1
fi
echo "contract-check: requests and responses conform to $(basename "$spec")"
