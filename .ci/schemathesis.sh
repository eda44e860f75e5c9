#!/usr/bin/env bash
# Property-based tests of the HTTP API with schemathesis (PyPI) against a running daemon
# (`daemon --http`, a SQLite file, the simulator): no answer may be a 5xx, and every
# answer must be as the OpenAPI document the daemon serves says. Fails on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="$PWD/target/schemathesis-venv"
[ -x "$venv/bin/schemathesis" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q -r .ci/schemathesis-requirements.txt
"$venv/bin/schemathesis" --version

cargo build --locked --quiet
bin="$PWD/target/debug/fluidtalk-runner"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" sim --listen 127.0.0.1:0 >"$work/sim.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$work/sim.out" ] && break; sleep 0.1; done
sim_url="$(head -n1 "$work/sim.out")"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat >"$work/jobs.toml" <<TOML
[fluidtalk]
base_url = "$sim_url"
timeout = "5s"

[[job]]
name = "reactions"
kind = "event"
event_type = "story_reaction"
schedule = "0 0 3 * * *"
TOML
export FLUIDTALK_RUNNER_TOKEN="schemathesis-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
# `exec`: the background job is the daemon itself, so the cleanup's kill reaches it.
(cd "$work" && FLUIDTALK_API_KEY=ft_sk_schemathesis DATABASE_URL="sqlite://$work/leads.db" \
  FLUIDTALK_LOG=warn exec "$bin" daemon --http "127.0.0.1:$port" 2>"$work/daemon.log") &
pids+=($!)

run_schemathesis() {
  "$venv/bin/schemathesis" run "http://127.0.0.1:$port/v1/openapi.json" \
    --wait-for-schema 60 \
    --header "Authorization: Bearer $FLUIDTALK_RUNNER_TOKEN" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --phases examples,coverage,fuzzing \
    --max-examples 40 \
    --workers 2 \
    --suppress-health-check too_slow 2>&1 | tee "$work/schemathesis.out"
  return "${PIPESTATUS[0]}"
}

status=0
run_schemathesis || status=$?
# Hypothesis under this CPython sometimes crashes in its own source introspection ("AST
# constructor recursion depth mismatch"): a fault of the tool, not a finding about the API.
# Only such a run, with no failure reported, is tried once more.
if [ "$status" -ne 0 ] && ! grep -q "^Failures:" "$work/schemathesis.out" \
   && grep -q "AST constructor recursion depth mismatch" "$work/schemathesis.out"; then
  echo "schemathesis crashed inside hypothesis (not an API finding); running it once more" >&2
  status=0
  run_schemathesis || status=$?
fi
if [ "$status" -ne 0 ]; then
  echo "schemathesis found a problem; the daemon's log:" >&2
  tail -n 50 "$work/daemon.log" >&2
  exit 1
fi
