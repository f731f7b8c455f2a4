#!/usr/bin/env bash
# Runs schemathesis (PyPI) against a demo server of the given ferry binary, with the demo's API token: every
# /api/v1 operation of /api/openapi.json gets examples, boundary values and generated input, then stateful
# sequences. Fails on any 5xx and on answers that differ from the document.
#   scripts/schemathesis.sh BINARY [DATABASE_URL]   (default: the embedded SQLite of a fresh data directory)
set -euo pipefail
bin="$1"
database_url="${2:-}"
dir="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
env FERRY_DATA_DIR="$dir" FERRY_BIND="127.0.0.1:$port" ${database_url:+FERRY_DATABASE_URL="$database_url"} \
    FERRY_LOG=warn "$bin" serve --demo >"$dir/stdout" 2>"$dir/stderr" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
    grep -q "listening on" "$dir/stdout" 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || { cat "$dir/stderr"; echo "ferry serve --demo exited"; exit 1; }
    sleep 0.5
done
token="$(grep -o 'fry_[A-Za-z0-9_-]*' "$dir/stdout" | head -n1)"
[ -n "$token" ] || { echo "no API token in the demo's output"; exit 1; }
status=0
schemathesis run "$base/api/openapi.json" --url "$base" \
    -H "api_access_token: $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-50}" --seed 1 --workers 2 --no-color \
    --report junit --report-dir "${SCHEMATHESIS_REPORT_DIR:-$dir/report}" || status=$?
if grep -q "internal error" "$dir/stdout" "$dir/stderr"; then
    echo "the server logged internal errors:"
    grep -h "internal error" "$dir/stdout" "$dir/stderr" | head -n 20
    status=1
fi
exit "$status"
