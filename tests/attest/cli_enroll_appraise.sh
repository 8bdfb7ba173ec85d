#!/usr/bin/env bash
# CLI end to end on swtpm: ak create/challenge/activate/enroll, attest with a generated UEFI log,
# policy capture, appraise --policy --registry --clock-state --out ear.jwt (verified with
# python3-jwcrypto), eventlog; then the failure paths: a changed reference value and a replayed
# clock state give a contraindicated EAR with the reasons.
# Usage: cli_enroll_appraise.sh WIMSE_TPM_EXE   (under tests/with_swtpm.sh)
set -euo pipefail
exe=$1
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
ca="$WIMSE_TPM_STATE/ca"
"$exe" keygen --out "$t/key.tss" >/dev/null
"$exe" ak create --identity spiffe://example.org/host/a --out "$t/req.json"
"$exe" ak challenge --request "$t/req.json" --ek-roots "$ca/swtpm-localca-rootca-cert.pem" \
  --ek-intermediates "$ca/issuercert.pem" --registry "$t/reg.json" --state "$t/state.json" \
  --out "$t/chal.json"
"$exe" ak activate --challenge "$t/chal.json" --out "$t/answer.bin"
"$exe" ak enroll --state "$t/state.json" --answer "$t/answer.bin" --registry "$t/reg.json"
grep -q '"ak_name"' "$t/reg.json"
# Without the root the EK chain is refused.
if "$exe" ak challenge --request "$t/req.json" --ek-roots "$ca/issuercert.pem" \
  --registry "$t/reg2.json" --state "$t/s2" --out "$t/c2" 2>"$t/err"; then
  echo "FAIL: challenge without the root passed"; exit 1
fi
grep -q ek_chain_invalid "$t/err"
openssl ecparam -name prime256v1 -genkey -noout 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out "$t/verifier.pem"
openssl pkey -in "$t/verifier.pem" -pubout -out "$t/verifier.pub"
nonce=$(openssl rand -hex 32)
"$exe" attest --key "$t/key.tss" --nonce "$nonce" --out "$t/ev.cmw" --uefi-log '' --ima-log ''
"$exe" policy capture --evidence "$t/ev.cmw" --nonce "$nonce" --out "$t/policy.json" \
  --id urn:test:policy:1
"$exe" appraise --evidence "$t/ev.cmw" --nonce "$nonce" --policy "$t/policy.json" \
  --nonce-issued "$(date +%s)" --registry "$t/reg.json" --identity spiffe://example.org/host/a \
  --clock-state "$t/clock.json" --out "$t/ear.jwt" --signing-key "$t/verifier.pem"
/usr/bin/python3 - "$t/ear.jwt" "$t/verifier.pub" "$nonce" <<'PY'
import sys, json, base64
from jwcrypto import jwk, jws
tok = open(sys.argv[1]).read().strip()
key = jwk.JWK.from_pem(open(sys.argv[2], 'rb').read())
s = jws.JWS(); s.deserialize(tok); s.verify(key, alg='ES256')
c = json.loads(s.payload)
assert c['eat_profile'] == 'tag:ietf.org,2026:rats/ear#03', c
assert c['ear_status'] == 'affirming', c
t = c['submods']['tpm']
assert t['ear_trustworthiness_vector']['instance-identity'] == 2, t
assert t['ear_trustworthiness_vector']['hardware'] == 2, t
assert t['ear_trustworthiness_vector']['executables'] == 3, t
assert t['ear_appraisal_policy_ids'] == ['urn:test:policy:1'], t
n = base64.urlsafe_b64decode(t['eat_nonce'] + '==').hex()
assert n == sys.argv[3], (n, sys.argv[3])
assert 'akpub' in t['ear_veraison_key_attestation']
print('EAR ok')
PY
test -s "$t/clock.json"
# The same evidence again: the clock state now says it is old (and the nonce is reused).
if "$exe" appraise --evidence "$t/ev.cmw" --nonce "$nonce" --clock-state "$t/clock.json" \
  --out "$t/ear2.jwt" --signing-key "$t/verifier.pem" >"$t/out2"; then
  echo "FAIL: replayed evidence passed"; exit 1
fi
grep -q clock_rollback "$t/out2"
# A reference value that differs: contraindicated with the reason in the EAR.
sed 's/"0": "\([0-9a-f]\)/"0": "f/' "$t/policy.json" >"$t/bad-policy.json"
nonce2=$(openssl rand -hex 32)
"$exe" attest --key "$t/key.tss" --nonce "$nonce2" --out "$t/ev2.cmw" --uefi-log '' --ima-log ''
if "$exe" appraise --evidence "$t/ev2.cmw" --nonce "$nonce2" --policy "$t/bad-policy.json" \
  --nonce-issued "$(date +%s)" --out "$t/ear3.jwt" --signing-key "$t/verifier.pem" >"$t/out3"; then
  echo "FAIL: wrong reference value passed"; exit 1
fi
/usr/bin/python3 - "$t/ear3.jwt" "$t/verifier.pub" <<'PY'
import sys, json
from jwcrypto import jwk, jws
key = jwk.JWK.from_pem(open(sys.argv[2], 'rb').read())
s = jws.JWS(); s.deserialize(open(sys.argv[1]).read().strip()); s.verify(key, alg='ES256')
c = json.loads(s.payload)
assert c['ear_status'] == 'contraindicated', c
assert 'pcr_reference_mismatch' in c['submods']['tpm']['wimse_reasons'], c
assert 'ear_veraison_key_attestation' not in c['submods']['tpm']
print('contraindicated EAR ok')
PY
echo "cli_enroll_appraise: OK"
