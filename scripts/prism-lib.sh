# Shared by the contract checks: Prism installed (pinned), deskpilot and the check's example built,
# the sandbox started on $sandbox_port. Source it after setting name, spec, sandbox_port and
# example; afterwards $prism, $target, $logs, wait_for and the background-process cleanup are set.
prism_version=5.14.2

[ -f "$spec" ] || { echo "$name: OpenAPI description not found at $spec" >&2; exit 1; }
command -v npm >/dev/null || { echo "$name: npm is required (apt-get install nodejs npm)" >&2; exit 1; }

target=${CARGO_TARGET_DIR:-$root/target}
prism="$target/prism/node_modules/.bin/prism"
if [ ! -x "$prism" ] || [ "$("$prism" --version)" != "$prism_version" ]; then
  echo "$name: installing @stoplight/prism-cli@$prism_version into $target/prism"
  npm install --silent --no-audit --no-fund --prefix "$target/prism" "@stoplight/prism-cli@$prism_version" >/dev/null
fi

cargo build --quiet --bin deskpilot --example "$example"
logs=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_for() { # url name log
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.2
  done
  echo "$name: $2 did not start; its log:" >&2; cat "$3" >&2; exit 1
}

"$target/debug/deskpilot" sandbox --addr "127.0.0.1:$sandbox_port" --api-key contract >"$logs/sandbox.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$sandbox_port/health" sandbox "$logs/sandbox.log"
