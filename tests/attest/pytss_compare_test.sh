#!/usr/bin/env bash
# Our TPMS_ATTEST parsing agrees field by field with python3-tpm2-pytss (issue 5, "Interop and
# tests"), on real bytes: a quote and a certify that `wimse-tpm attest` made on swtpm (run under
# tests/with_swtpm.sh). `evidence_tool parse-attest` prints what our parser reads;
# pytss_compare.py parses the same bytes with tpm2_pytss (TPMS_ATTEST and TPM2B_ATTEST) and with
# a plain struct reader and fails on any difference. Then a self-check: the comparison must fail
# when our report is off by one field (so the test can fail).
# Usage: pytss_compare_test.sh WIMSE_TPM_BINARY EVIDENCE_TOOL PYTSS_COMPARE_PY
set -euo pipefail
wimse=$1
tool=$2
compare=$3
py=/usr/bin/python3
: "${WIMSE_TPM_TCTI:?run under tests/with_swtpm.sh}"
export TPM2TOOLS_TCTI="$WIMSE_TPM_TCTI" TSS2_LOG=all+none
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$py" -c 'import tpm2_pytss' || fail "python3-tpm2-pytss is not installed (ci/setup)"
# Non-trivial PCR values so pcrDigest is not the all-zero-PCR digest.
for i in 1 4 7; do tpm2_pcrextend "$i:sha256=$(openssl rand -hex 32)"; done
nonce=$(openssl rand -hex 32)
"$wimse" keygen --out "$tmp/wk.pem" >/dev/null
"$wimse" attest --key "$tmp/wk.pem" --nonce "$nonce" --out "$tmp/ev.json" >/dev/null
mkdir "$tmp/x"
"$tool" export "$tmp/ev.json" "$tmp/x"

for m in quote certify; do
  "$tool" parse-attest "$tmp/x/$m.msg" >"$tmp/$m.json"
  "$py" "$compare" "$tmp/x/$m.msg" "$tmp/$m.json" || fail "$m: our parser and pytss disagree"
  # The bytes are the ones the TPM made for this round: extraData is our nonce.
  "$py" -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["extraData"] != sys.argv[2])' \
    "$tmp/$m.json" "$nonce" || fail "$m: extraData is not the nonce"
done
"$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(not (d["type"]==0x8018 and d["pcrSelect"]==[{"hash":11,"pcrSelect":"ff0000"}] and len(d["pcrDigest"])==64))' \
  "$tmp/quote.json" || fail "quote fields are not the expected sha256 PCR 0-7 selection"
"$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(not (d["type"]==0x8017 and d["name"].startswith("000b") and len(d["name"])==68))' \
  "$tmp/certify.json" || fail "certify name is not a SHA-256 Name"
echo "ok 1 - quote and certify: every field agrees with tpm2_pytss"

# Self-check: a report that differs in one field (each field in turn) must be refused.
for m in quote certify; do
  for field in $("$py" -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))))' "$tmp/$m.json"); do
    "$py" - "$tmp/$m.json" "$field" "$tmp/bad.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
k = sys.argv[2]
v = d[k]
if isinstance(v, int):
    d[k] = v ^ 1
elif isinstance(v, list):
    d[k] = [{"hash": v[0]["hash"], "pcrSelect": "fe0000"}]
else:
    d[k] = (v[:-2] + ("00" if v[-2:] != "00" else "01")) if v else "00"
json.dump(d, open(sys.argv[3], "w"))
PY
    if "$py" "$compare" "$tmp/x/$m.msg" "$tmp/bad.json" >/dev/null; then
      fail "$m: a report with a wrong $field passed the comparison"
    fi
  done
done
echo "ok 2 - the comparison fails when any one field differs"
