#!/usr/bin/env bash
# Issue 6: a credential service restarted mid-way loses nothing.
# Enrol an agent and attest; SIGTERM the service; start it again on the same state directory
# and port. Then: the enrolment and the issuance count are still there; the nonce consumed
# before the restart is refused as replayed; a nonce issued (not used) before the restart is
# still known (consumed once: evidence refused, then replayed); the same agent (same state dir,
# no re-enrolment) attests again and gets new credentials for the same TPM key that verify
# with openssl and jwcrypto; the audit chain verifies across the restart.
#   restart_test.sh BUILD_DIR      (under tests/with_swtpm.sh)
source "$(dirname "$0")/lib.sh"

write_policy 300 "host-*"
start_service
pass "service on $SVC"

agent() {  # one bootstrap of the same agent (same state dir), appending to agent.log
  "$W" agent --service "$SVC" --service-ca "$svc_dir/bundle.pem" --identity host-r --label w \
    --state-dir "$work/a/state" --cred-dir "$work/a/creds" --once >>"$work/agent.log" 2>&1
}
mkdir -p "$work/a"
agent || fail "first bootstrap"
grep -q "enrolled: AK" "$work/agent.log" || fail "first bootstrap did not enrol"
v0=$($PY "$VERIFY" "$work/a/creds") || fail "credentials before the restart do not verify"
pass "enrolled and attested: serial $(jget "$v0" serial)"

# The nonce the attestation consumed (named by its audit record) and a fresh, unused one.
used_nonce=$($PY -c 'import json,sys
recs=[json.loads(l) for l in open(sys.argv[1])]
print([r for r in recs if r.get("event")=="issuance" and r.get("decision")=="allow"][-1]["claims"]["nonce"])' \
  "$svc_dir/audit.jsonl") || fail "no issuance record with its nonce"
out=$(svc_curl POST /v1/challenge '{"identity":"host-r"}')
[ "${out%% *}" = 200 ] || fail "challenge: $out"
open_nonce=$(jget "${out#* }" nonce)
h0=$(svc_curl GET /v1/health)
[ "$(jget "${h0#* }" enrolments)" = 1 ] && [ "$(jget "${h0#* }" issued)" = 1 ] ||
  fail "health before the restart: $h0"

stop_service
pass "service stopped by SIGTERM"
start_service
[ "$(grep -c 'listening on' "$work/service.log")" = 2 ] || fail "service did not restart"
grep -q "1 enrolments on file" "$work/service.log" || fail "restart does not report the enrolment"
h1=$(svc_curl GET /v1/health)
[ "$(jget "${h1#* }" enrolments)" = 1 ] && [ "$(jget "${h1#* }" issued)" = 1 ] ||
  fail "state lost across the restart: $h1"
pass "restarted on the same state dir and port: 1 enrolment, 1 issuance on file"

attest_req() {
  printf '{"identity":"host-r","label":"w","nonce":"%s","evidence":"{}","csr":"none"}' "$1"
}
out=$(svc_curl POST /v1/attest "$(attest_req "$used_nonce")")
[ "${out%% *}" = 401 ] && [ "$(jget "${out#* }" error)" = nonce_replayed ] ||
  fail "replay of the pre-restart nonce: expected 401 nonce_replayed, got $out"
pass "nonce consumed before the restart refused after it: 401 nonce_replayed"
out=$(svc_curl POST /v1/attest "$(attest_req "$open_nonce")")
[ "${out%% *}" = 403 ] && [ "$(jget "${out#* }" error)" = evidence_rejected ] ||
  fail "pre-restart unused nonce with bad evidence: expected 403 evidence_rejected, got $out"
out=$(svc_curl POST /v1/attest "$(attest_req "$open_nonce")")
[ "${out%% *}" = 401 ] && [ "$(jget "${out#* }" error)" = nonce_replayed ] ||
  fail "second use of the pre-restart nonce: expected 401 nonce_replayed, got $out"
pass "nonce issued before the restart still known after it: used once, then refused as replayed"

agent || fail "bootstrap after the restart"
[ "$(grep -c 'enrolling' "$work/agent.log")" = 1 ] || fail "the agent enrolled again"
v1=$($PY "$VERIFY" "$work/a/creds") || fail "credentials after the restart do not verify"
[ "$(jget "$v1" serial)" != "$(jget "$v0" serial)" ] || fail "no new certificate"
[ "$(jget "$v1" jti)" != "$(jget "$v0" jti)" ] || fail "no new WIT"
[ "$(jget "$v1" key)" = "$(jget "$v0" key)" ] || fail "the key changed (expected the same TPM key)"
h2=$(svc_curl GET /v1/health)
[ "$(jget "${h2#* }" enrolments)" = 1 ] && [ "$(jget "${h2#* }" issued)" = 2 ] ||
  fail "health after the second attestation: $h2"
pass "same agent attested again without re-enrolling: serial $(jget "$v1" serial), same key"

stop_service
res=$("$W" audit verify --log "$svc_dir/audit.jsonl") || fail "audit verify: $res"
pass "audit chain across the restart: $res"
