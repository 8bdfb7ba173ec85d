#!/usr/bin/env bash
# Issue 6: 16 agents at once get valid, distinct credentials.
# 16 `wimse-tpm agent --once` processes (host-01..host-16, each its own state and credential
# directory) are started together against one service and one swtpm, and every one must exit 0
# on its first and only attempt. All agents of one TPM share one AK, so their quotes reach the
# service out of TPM-clock order: the service compares each quote's clock with the AK's clock
# state on file when that quote's NONCE was issued (not the latest on file), so no agent may be
# refused with clock_rollback. The direct swtpm TCTI has 3 transient object slots for all
# processes together; the agents share the default TPM lock file (/tmp/wimse-tpm-<hash of the
# TCTI>.lock) and flush their objects before releasing it. Every credential directory must
# verify (openssl verify against the bundle, jwcrypto against the JWKS, cnf = certificate key),
# and keys, certificate serials and WIT jti must be pairwise distinct. with_swtpm.sh then
# checks that no transient object or session is left in the TPM.
#   many_agents_test.sh BUILD_DIR      (under tests/with_swtpm.sh)
source "$(dirname "$0")/lib.sh"

n=16
write_policy 300 "host-*"
start_service
agent_pids=()
t0=$(date +%s%N)
for i in $(seq -w 1 $n); do
  mkdir -p "$work/a$i"
  "$W" agent --service "$SVC" --service-ca "$svc_dir/bundle.pem" --identity "host-$i" --label w \
    --state-dir "$work/a$i/state" --cred-dir "$work/a$i/creds" --once >"$work/agent-$i.log" 2>&1 &
  agent_pids+=("$!")
  track "$!"
done
ok=0
for p in "${agent_pids[@]}"; do wait "$p" && ok=$((ok + 1)); done
t1=$(date +%s%N)
if grep -l "0x902\|OBJECT_MEMORY\|object memory" "$work"/agent-*.log >&2; then
  fail "TPM object slots exhausted in some agent: the shared TPM lock did not hold"
fi
rollback=$(grep -l "clock_rollback" "$work"/agent-*.log | wc -l)
[ "$rollback" = 0 ] || fail "$rollback agents refused with clock_rollback (quotes out of clock order)"
[ $ok = $n ] || fail "only $ok of $n agents (--once) succeeded on their first attempt"
for i in $(seq -w 1 $n); do
  [ -s "$work/a$i/creds/identity.json" ] || fail "agent $i exited 0 without credentials"
done
pass "$n agents (--once) got credentials on their first attempt in $(( (t1 - t0) / 1000000 )) ms, none refused"

dirs=()
for i in $(seq -w 1 $n); do dirs+=("$work/a$i/creds"); done
$PY "$VERIFY" "${dirs[@]}" >"$work/verified.jsonl" || fail "some credentials do not verify"
$PY - "$work/verified.jsonl" "$n" <<'PY' || fail "credentials are not distinct"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
n = int(sys.argv[2])
assert len(rows) == n, f"{len(rows)} verified of {n}"
for field in ("identifier", "serial", "jti", "key", "wit_sha256"):
    values = {r[field] for r in rows}
    assert len(values) == n, f"only {len(values)} distinct {field} values among {n}"
PY
pass "$n credentials verify (openssl, jwcrypto) with distinct identifiers, keys, serials and jti"
h=$(svc_curl GET /v1/health)
[ "$(jget "${h#* }" enrolments)" = $n ] && [ "$(jget "${h#* }" issued)" = $n ] ||
  fail "service health after $n agents: $h"
stop_service
res=$("$W" audit verify --log "$svc_dir/audit.jsonl") || fail "audit verify: $res"
pass "service: $n enrolments, $n issuances; audit: $res"
