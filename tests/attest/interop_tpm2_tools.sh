#!/usr/bin/env bash
# Interop with tpm2-tools 5.4, both directions (run under tests/with_swtpm.sh):
#  1. our evidence passes tpm2_checkquote (and fails it with another nonce);
#  2. quotes and certifies made by tpm2-tools with its own AK (tpm2_createek + tpm2_createak,
#     ECC/ECDSA, RSA/RSASSA and RSA/RSAPSS) pass our verifier (`wimse-tpm appraise`) except for
#     the certify nonce, which tpm2_certify 5.4 cannot set; they fail with another nonce or AK.
# Usage: interop_tpm2_tools.sh WIMSE_TPM_BINARY EVIDENCE_TOOL
set -euo pipefail
wimse=$1
tool=$2
: "${WIMSE_TPM_TCTI:?run under tests/with_swtpm.sh}"
export TPM2TOOLS_TCTI="$WIMSE_TPM_TCTI" TSS2_LOG=all+none
tmp=$(mktemp -d)
trap 'tpm2_flushcontext -t >/dev/null 2>&1 || true; tpm2_flushcontext -s >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
flush() { tpm2_flushcontext -t; tpm2_flushcontext -s; }
pcrlist=sha256:0,1,2,3,4,5,6,7

nonce=$(openssl rand -hex 32)
other=$(openssl rand -hex 32)
for i in 0 3 7; do tpm2_pcrextend "$i:sha256=$(openssl rand -hex 32)"; done

# --- 1. our quote -> tpm2_checkquote ------------------------------------------------------------
"$wimse" keygen --out "$tmp/wk.pem" >/dev/null
"$wimse" attest --key "$tmp/wk.pem" --nonce "$nonce" --out "$tmp/ev.json" --ak-out "$tmp/ak.pem" \
  >/dev/null
# Our commands leave nothing loaded (the EXIT trap flushes what tpm2-tools leave, which would
# otherwise hide a leak of ours from tests/with_swtpm.sh).
left=$({ tpm2_getcap handles-transient; tpm2_getcap handles-loaded-session; } 2>/dev/null | tr -d '\n')
[ -z "$left" ] || fail "keygen/attest left TPM handles behind: $left"
mkdir "$tmp/ours"
"$tool" export "$tmp/ev.json" "$tmp/ours"
cmp "$tmp/ak.pem" "$tmp/ours/ak.pem" || fail "AK PEM from attest differs from the evidence AK"
# PCR file: tpm2-tools' serialized format (5.4 cannot hash a values-only file given with -l).
checkquote() {
  tpm2_checkquote -u "$tmp/ak.pem" -m "$tmp/ours/quote.msg" -s "$tmp/ours/quote.sig" \
    -f "$1" -g sha256 -q "$2" >/dev/null 2>&1
}
checkquote "$tmp/ours/pcrs.tpm2tools" "$nonce" || fail "tpm2_checkquote rejected our quote"
if checkquote "$tmp/ours/pcrs.tpm2tools" "$other"; then
  fail "tpm2_checkquote accepted our quote with another nonce"
fi
# One byte of one PCR value changed (the last byte of the last digest): must fail.
cp "$tmp/ours/pcrs.tpm2tools" "$tmp/bad.pcrs"
off=$((132 + 4 + 4 + 7 * 66 + 2 + 31))
printf '\x5a' | dd of="$tmp/bad.pcrs" bs=1 seek="$off" conv=notrunc status=none
if checkquote "$tmp/bad.pcrs" "$nonce"; then
  fail "tpm2_checkquote accepted our quote with a changed PCR value"
fi
# The PCR values we report are the TPM's own (tpm2_pcrread, raw concatenation).
tpm2_pcrread -Q "$pcrlist" -o "$tmp/pcrread.bin"
cmp "$tmp/pcrread.bin" "$tmp/ours/pcrs.bin" || fail "reported PCR values differ from tpm2_pcrread"
echo "ok 1 - our quote passes tpm2_checkquote (and fails it with another nonce or PCR value)"

# --- 2. tpm2-tools quote + certify -> our verifier ----------------------------------------------
n=2
for cfg in "ecc:ecdsa" "rsa:rsassa" "rsa:rsapss"; do
  alg=${cfg%%:*}
  scheme=${cfg##*:}
  d="$tmp/$alg-$scheme"
  mkdir "$d"
  tpm2_createek -Q -c "$d/ek.ctx" -G "$alg" -u "$d/ek.pub"
  flush
  tpm2_createak -Q -C "$d/ek.ctx" -c "$d/ak.ctx" -G "$alg" -g sha256 -s "$scheme" -u "$d/ak.pub"
  flush
  tpm2_readpublic -Q -c "$d/ak.ctx" -o "$d/ak.pub"
  tpm2_readpublic -Q -c "$d/ak.ctx" -f pem -o "$d/ak.pem"
  flush
  tpm2_quote -Q -c "$d/ak.ctx" -l "$pcrlist" -q "$nonce" -m "$d/quote.msg" -s "$d/quote.sig" \
    -g sha256 --scheme "$scheme"
  flush
  tpm2_pcrread -Q "$pcrlist" -o "$d/pcrs.bin"
  echo "0,1,2,3,4,5,6,7" >"$d/pcrs.list"
  # Our workload key, loaded by tpm2-tools under the same SRK template (TCG H-2 ECC P-256),
  # certified by the tpm2-tools AK.
  tpm2_createprimary -Q -C o -G ecc256:null:aes128cfb -g sha256 \
    -a 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt' \
    -c "$d/srk.ctx"
  "$tool" keyblobs "$tmp/wk.pem" "$d"
  tpm2_load -Q -C "$d/srk.ctx" -u "$d/key.pub" -r "$d/key.priv" -c "$d/key.ctx"
  flush
  tpm2_certify -Q -c "$d/key.ctx" -C "$d/ak.ctx" -g sha256 --scheme "$scheme" -o "$d/certify.msg" \
    -s "$d/certify.sig"
  flush
  "$tool" import "$d" "$nonce" sha256 "$d/ev.json"
  # tpm2_certify 5.4 has no qualifying-data option (its certify carries 4 bytes of its own):
  # everything else (quote signature, nonce, selection, PCR digest; certify signature, Name,
  # AK attributes) must pass, and the missing certify nonce must be the only reason.
  out=$("$wimse" appraise --evidence "$d/ev.json" --nonce "$nonce" --ak-pub "$d/ak.pem") &&
    fail "$cfg: accepted a certify without the nonce"
  case "$out" in
    *";"*) fail "$cfg: more than one reason: $out" ;;
    "contraindicated: certify_nonce_mismatch: certify extraData ("*") is not the expected nonce") ;;
    *) fail "$cfg: unexpected verdict for tpm2-tools evidence: $out" ;;
  esac
  out=$("$wimse" appraise --evidence "$d/ev.json" --nonce "$other" --ak-pub "$d/ak.pem") &&
    fail "$cfg: our verifier accepted tpm2-tools evidence for another nonce"
  case "$out" in
    "contraindicated: quote_nonce_mismatch"*certify_nonce_mismatch*) ;;
    *) fail "$cfg: unexpected rejection: $out" ;;
  esac
  # A different trusted AK (the one from part 1) is not this AK.
  out=$("$wimse" appraise --evidence "$d/ev.json" --nonce "$nonce" --ak-pub "$tmp/ak.pem") &&
    fail "$cfg: accepted under another trusted AK"
  case "$out" in
    *ak_not_trusted*) ;;
    *) fail "$cfg: unexpected rejection: $out" ;;
  esac
  echo "ok $n - tpm2-tools $cfg AK quote + certify pass our verifier (certify nonce aside), fail with another nonce or AK"
  n=$((n + 1))
done
