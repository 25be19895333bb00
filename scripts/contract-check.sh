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
prism_version=5.14.2
sandbox_port=${SANDBOX_PORT:-18481}
prism_port=${PRISM_PORT:-18410}

[ -f "$spec" ] || { echo "contract-check: OpenAPI description not found at $spec" >&2; exit 1; }
command -v npm >/dev/null || { echo "contract-check: npm is required (apt-get install nodejs npm)" >&2; exit 1; }

target=${CARGO_TARGET_DIR:-$root/target}
prism="$target/prism/node_modules/.bin/prism"
if [ ! -x "$prism" ] || [ "$("$prism" --version)" != "$prism_version" ]; then
  echo "contract-check: installing @stoplight/prism-cli@$prism_version into $target/prism"
  npm install --silent --no-audit --no-fund --prefix "$target/prism" "@stoplight/prism-cli@$prism_version" >/dev/null
fi

cargo build --quiet --bin deskpilot --example unified_contract
logs=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_for() { # url name log
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.2
  done
  echo "contract-check: $2 did not start; its log:" >&2; cat "$3" >&2; exit 1
}

"$target/debug/deskpilot" sandbox --addr "127.0.0.1:$sandbox_port" --api-key contract >"$logs/sandbox.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$sandbox_port/health" sandbox "$logs/sandbox.log"

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
