# Shared by the tests/service/*_test.sh scripts (sourced, not run). They run under
# tests/with_swtpm.sh (WIMSE_TPM_TCTI, WIMSE_TPM_STATE) with the build directory as $1.
# Provides: $W (the CLI), $work (a fresh directory, removed at exit with every process started
# through track()), fail/pass, wait_for, write_policy, start_service/stop_service, agent_sock.
set -uo pipefail

root="${WIMSE_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}"
build="${1:-${WIMSE_BUILD_ROOT:-$root/build}}"
W="$build/src/cli/wimse-tpm"
export WIMSE_PROVIDER_DIR="$build/provider"
PY=/usr/bin/python3
VERIFY="$root/tests/service/verify_creds.py"
[ -x "$W" ] || { echo "FAIL: $W not built" >&2; exit 1; }
[ -n "${WIMSE_TPM_TCTI:-}" ] || { echo "FAIL: WIMSE_TPM_TCTI unset (run under with_swtpm.sh)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/wimse-svctest.XXXXXX")
pids=()
track() { pids+=("$1"); }
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  [ -n "${KEEP_WORK:-}" ] && echo "work directory kept: $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM

fail() {
  echo "FAIL: $*" >&2
  for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }; done
  exit 1
}
pass() { echo "ok: $*"; }
wait_for() {  # wait_for SECONDS CMD...
  local t=$(( $1 * 10 )); shift
  while [ $t -gt 0 ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; t=$((t - 1)); done
  return 1
}

# write_policy LIFETIME ENROL_PATTERN (workloads: identity * / label * -> .../{identity}/{label})
write_policy() {
  cat >"$work/policy.json" <<JSON
{"trust_domain": "example.org", "issuer": "https://credentials.example.org",
 "enrol": ["$2"],
 "workloads": [{"identity": "*", "label": "*", "id": "spiffe://example.org/{identity}/{label}"}],
 "certificate_lifetime_seconds": $1, "wit_lifetime_seconds": $1, "nonce_ttl_seconds": 60}
JSON
}

ek_args=(--ek-roots "$WIMSE_TPM_STATE/ca/swtpm-localca-rootca-cert.pem"
         --ek-intermediates "$WIMSE_TPM_STATE/ca/issuercert.pem")
svc_dir="$work/service"
svc_port=0
# start_service: on svc_port (0 the first time: any free port, then the same one again).
start_service() {
  rm -f "$svc_dir/port"
  "$W" serve --state-dir "$svc_dir" --policy "$work/policy.json" --listen "127.0.0.1:$svc_port" \
    "${ek_args[@]}" >>"$work/service.log" 2>&1 &
  svc_pid=$!
  track "$svc_pid"
  wait_for 20 test -s "$svc_dir/port" || fail "service did not start"
  svc_port=$(cat "$svc_dir/port")
  SVC="https://127.0.0.1:$svc_port"
}
stop_service() {
  kill -TERM "$svc_pid"
  wait "$svc_pid" 2>/dev/null
  grep -q "wimse-tpm serve: stopped" "$work/service.log" || fail "service did not stop cleanly on SIGTERM"
}
# svc_curl METHOD PATH [BODY]: prints "STATUS BODY" (service authenticated by its bundle).
svc_curl() {
  local code
  code=$(curl -sS --cacert "$svc_dir/bundle.pem" -X "$1" -H 'Content-Type: application/json' \
    ${3:+--data "$3"} -o "$work/curl.body" -w '%{http_code}' "$SVC$2") || code=000
  echo "$code $(cat "$work/curl.body" 2>/dev/null)"
}
# agent_sock SOCKET JSON: one request to the agent's local API, prints the answer line.
agent_sock() {
  $PY - "$1" "$2" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(30); s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n"); data = b""
while not data.endswith(b"\n"):
    chunk = s.recv(65536)
    if not chunk: break
    data += chunk
print(data.decode().strip())
PY
}
jget() { $PY -c 'import json,sys; v=json.loads(sys.argv[1]); print(v.get(sys.argv[2], ""))' "$1" "$2"; }
