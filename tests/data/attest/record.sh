#!/usr/bin/env bash
# Records the evidence files in this directory from a fresh swtpm (ci/swtpm), with our producer
# (wimse-tpm attest) and tpm2-tools 5.4. Run once; the unit tests only read the results.
#
#   tests/data/attest/record.sh BUILD_DIR
#
# Outputs (all for nonce.hex = 000102...1f):
#   good.cmw.json            our evidence for workload key 1 (quote sha256:0-7 + certify)
#   ak.pem                   the AK public key of that swtpm (PEM SPKI)
#   other-key.cmw.json       same TPM, same nonce, workload key 2 (for "certify of another key")
#   quote-sel0-6.{msg,sig}   genuine quotes by the same AK (re-created with tpm2_createprimary from
#   quote-sel0-7+16.{msg,sig}  the same template), same nonce, other PCR selections
#   quote-sha1.{msg,sig}
#   unrestricted-signer.cmw.json  good.cmw.json's quote and certify bytes, re-signed with
#                            tpm2_sign by a NON-restricted ECC signing key of the same TPM, whose
#                            public area replaces the AK (field cases C02/C05)
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
wimse="$build/src/cli/wimse-tpm"
tool="$build/tests/attest/evidence_tool"
tmp=$(mktemp -d)
cleanup() { "$root/ci/swtpm" stop "$tmp/tpm" >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT
WIMSE_TPM_TCTI=$("$root/ci/swtpm" start "$tmp/tpm")
export WIMSE_TPM_TCTI TPM2TOOLS_TCTI="$WIMSE_TPM_TCTI" TSS2_LOG=all+none

nonce=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
echo "$nonce" >"$here/nonce.hex"

# Non-zero PCRs 0-7 (a fresh swtpm has all zeros), so that a changed value is visible.
for i in 0 1 2 3 4 5 6 7; do
  tpm2_pcrextend "$i:sha256=$(printf 'wimse-tpm test pcr %d' "$i" | sha256sum | cut -c1-64)"
done

"$wimse" keygen --out "$tmp/wk1.pem" >/dev/null
"$wimse" keygen --out "$tmp/wk2.pem" >/dev/null
"$wimse" attest --key "$tmp/wk1.pem" --nonce "$nonce" --out "$here/good.cmw.json" \
  --ak-out "$here/ak.pem" >/dev/null
"$wimse" attest --key "$tmp/wk2.pem" --nonce "$nonce" --out "$here/other-key.cmw.json" >/dev/null

# The same AK through tpm2-tools: the template of src/tpm/attestation.h.
tpm2_createprimary -Q -C e -G ecc256:ecdsa-sha256:null -g sha256 \
  -a 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign' \
  -c "$tmp/ak.ctx"
tpm2_flushcontext -t
tpm2_readpublic -Q -c "$tmp/ak.ctx" -f pem -o "$tmp/ak.pem"
tpm2_flushcontext -t
cmp "$tmp/ak.pem" "$here/ak.pem" || { echo "tpm2-tools AK differs from ours" >&2; exit 1; }
tpm2_quote -Q -c "$tmp/ak.ctx" -l sha256:0,1,2,3,4,5,6 -q "$nonce" \
  -m "$here/quote-sel0-6.msg" -s "$here/quote-sel0-6.sig"
tpm2_flushcontext -t
tpm2_quote -Q -c "$tmp/ak.ctx" -l sha256:0,1,2,3,4,5,6,7,16 -q "$nonce" \
  -m "$here/quote-sel0-7+16.msg" -s "$here/quote-sel0-7+16.sig"
tpm2_flushcontext -t
tpm2_quote -Q -c "$tmp/ak.ctx" -l sha1:0,1,2,3,4,5,6,7 -q "$nonce" \
  -m "$here/quote-sha1.msg" -s "$here/quote-sha1.sig"
tpm2_flushcontext -t

# A non-restricted signing key signs the genuine attest bytes (TPM2_Sign, null ticket).
tpm2_createprimary -Q -C e -G ecc256:ecdsa-sha256:null -g sha256 \
  -a 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign' -c "$tmp/unr.ctx"
tpm2_flushcontext -t
tpm2_readpublic -Q -c "$tmp/unr.ctx" -o "$tmp/unr.pub"
tpm2_flushcontext -t
mkdir "$tmp/good"
"$tool" export "$here/good.cmw.json" "$tmp/good"
mkdir "$tmp/forged"
cp "$tmp/good/quote.msg" "$tmp/good/certify.msg" "$tmp/good/pcrs.bin" "$tmp/good/key.pub" \
  "$tmp/forged/"
cp "$tmp/unr.pub" "$tmp/forged/ak.pub"
tpm2_sign -Q -c "$tmp/unr.ctx" -g sha256 -o "$tmp/forged/quote.sig" "$tmp/forged/quote.msg"
tpm2_flushcontext -t
tpm2_sign -Q -c "$tmp/unr.ctx" -g sha256 -o "$tmp/forged/certify.sig" "$tmp/forged/certify.msg"
tpm2_flushcontext -t
echo "0,1,2,3,4,5,6,7" >"$tmp/forged/pcrs.list"
"$tool" import "$tmp/forged" "$nonce" sha256 "$here/unrestricted-signer.cmw.json"
chmod 644 "$here"/*.msg "$here"/*.sig
echo "recorded into $here"
