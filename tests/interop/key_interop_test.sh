#!/usr/bin/env bash
# Key files move between wimse-tpm, tpm2-openssl (Debian's provider "tpm2") and tpm2-tools:
#   1. a key from `openssl genpkey -provider tpm2` signs with `wimse-tpm sign`, with and
#      without an auth value (user-auth);
#   2. a key from tpm2_create + tpm2_encodeobject (5.4: inverted emptyAuth flag) signs with
#      wimse-tpm, with and without an auth value, under the H-2 primary and under a persistent
#      parent;
#   3. our key files load in tpm2-openssl (openssl pkeyutl -sign, also a key with an auth value
#      and -passin) and in tpm2_sign (tpm2_load under a tpm2_createprimary with the H-2
#      template);
#   4. keygen --alg rsa-2048 --persist, handle: references in pubkey/sign, evict, --auth-env.
# Every signature is verified in software by openssl. Runs under tests/with_swtpm.sh.
set -uo pipefail
W="$WIMSE_BUILD_ROOT/src/cli/wimse-tpm"
T="$WIMSE_TPM_TCTI"
export TPM2OPENSSL_TCTI="$T" TPM2TOOLS_TCTI="$T" TSS2_LOG=all+none
dir=$(mktemp -d /tmp/wimse-keyinterop-XXXXXX)
trap 'rm -rf "$dir"' EXIT
failures=0
ok() { echo "ok   $1"; }
fail() { echo "FAIL $1"; failures=$((failures + 1)); }
# Without a resource manager tpm2-tools leave what they load in the TPM (3 object slots):
# flush every transient object and session after each step (saved .ctx files stay loadable).
flush() { for t in -t -l -s; do tpm2_flushcontext "$t" >/dev/null 2>&1 || true; done; }
# Our own commands must leave nothing behind (the flush below is for tpm2-tools only, and must
# not hide a leak of ours from tests/with_swtpm.sh's final check).
tpm_handles() {
  { tpm2_getcap handles-transient; tpm2_getcap handles-loaded-session
    tpm2_getcap handles-saved-session; } 2>/dev/null | tr -d '\n'
}
check() {
  local name=$1; shift
  if "$@" >"$dir/last.log" 2>&1; then ok "$name"; else fail "$name"; cat "$dir/last.log"; fi
  # Our command, directly or as a shell line made only of our commands ("'$W' ... && '$W' ..."):
  # the TPM was flushed after the previous step, so anything left now is ours.
  if [ "$1" = "$W" ] || { [ "$1" = sh ] && [[ "$3" == "'$W' "* ]]; }; then
    local left
    left=$(tpm_handles)
    [ -z "$left" ] || fail "$name left TPM handles behind: $left"
  fi
  flush
}
printf 'message for interop\n' >"$dir/msg"

# verify_ec PUB SIG [DGST]: DER ECDSA signature over $dir/msg
verify() { openssl dgst "-${3:-sha256}" -verify "$1" -signature "$2" "$dir/msg"; }
# H-2 storage primary (draft-bottomley-tpm2-keys; what parent 0x40000001 means in key files)
h2_primary() {
  tpm2_createprimary -Q -C o -g sha256 -G ecc256:null:aes128cfb \
    -a 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt' -c "$1"
}

# 1. tpm2-openssl -> wimse-tpm
check "tpm2-openssl genpkey EC P-256" openssl genpkey -provider tpm2 -provider default \
  -algorithm EC -pkeyopt group:P-256 -out "$dir/t2o.pem"
check "wimse-tpm pubkey of a tpm2-openssl key" sh -c "'$W' pubkey --key '$dir/t2o.pem' >'$dir/t2o.pub'"
check "wimse-tpm sign with a tpm2-openssl key" "$W" sign --key "$dir/t2o.pem" --in "$dir/msg" --out "$dir/t2o.sig"
check "verify tpm2-openssl key signature" verify "$dir/t2o.pub" "$dir/t2o.sig"
# tpm2-openssl's auth key (its file has an explicit emptyAuth FALSE) signs through our CLI.
export T2O_AUTH=t2o-s3cr3t-pw
check "tpm2-openssl genpkey EC P-256 with user-auth" openssl genpkey -provider tpm2 -provider default \
  -algorithm EC -pkeyopt group:P-256 -pkeyopt user-auth:"$T2O_AUTH" -out "$dir/t2oa.pem"
check "wimse-tpm sign --auth-env with a tpm2-openssl auth key" sh -c \
  "'$W' pubkey --key '$dir/t2oa.pem' >'$dir/t2oa.pub' && '$W' sign --key '$dir/t2oa.pem' --auth-env T2O_AUTH --in '$dir/msg' --out '$dir/t2oa.sig'"
check "verify tpm2-openssl auth key signature" verify "$dir/t2oa.pub" "$dir/t2oa.sig"
tpm2_dictionarylockout -Q -c -p "" >/dev/null 2>&1 || true

# 2. tpm2-tools -> wimse-tpm
check "tpm2_createprimary H-2" h2_primary "$dir/h2.ctx"
check "tpm2_create P-256 (no auth)" tpm2_create -Q -C "$dir/h2.ctx" -G ecc256 -u "$dir/tt.pub" -r "$dir/tt.priv"
check "tpm2_encodeobject (no auth)" tpm2_encodeobject -C "$dir/h2.ctx" -u "$dir/tt.pub" -r "$dir/tt.priv" -o "$dir/tt.pem"
# tpm2_encodeobject 5.4 writes emptyAuth FALSE for this key without auth (tpm2-tools #3458):
# the CLI wants --empty-auth said rather than spend a dictionary-attack strike on a guess.
check "wimse-tpm sign --empty-auth with a tpm2-tools key (inverted emptyAuth)" sh -c \
  "'$W' pubkey --key '$dir/tt.pem' >'$dir/tt.pubkey' && '$W' sign --key '$dir/tt.pem' --empty-auth --in '$dir/msg' --out '$dir/tt.sig'"
check "verify tpm2-tools key signature" verify "$dir/tt.pubkey" "$dir/tt.sig"

printf 'tools-secret' >"$dir/tt.auth"
check "tpm2_create P-384 with auth" tpm2_create -Q -C "$dir/h2.ctx" -G ecc384 -p file:"$dir/tt.auth" \
  -u "$dir/tta.pub" -r "$dir/tta.priv"
check "tpm2_encodeobject -p" tpm2_encodeobject -C "$dir/h2.ctx" -u "$dir/tta.pub" -r "$dir/tta.priv" -p -o "$dir/tta.pem"
check "wimse-tpm sign --auth-file with a tpm2-tools key" sh -c \
  "'$W' pubkey --key '$dir/tta.pem' >'$dir/tta.pubkey' && '$W' sign --key '$dir/tta.pem' --auth-file '$dir/tt.auth' --in '$dir/msg' --out '$dir/tta.sig'"
check "verify tpm2-tools auth key signature" verify "$dir/tta.pubkey" "$dir/tta.sig" sha384
# tpm2_encodeobject -p writes emptyAuth TRUE for this key WITH an auth value (the inverted
# flag): the file says "no auth value", so the CLI sends the empty one and the TPM's refusal is
# reported as such (one strike; nothing in the file could have told us).
err=$("$W" sign --key "$dir/tta.pem" --in "$dir/msg" --out "$dir/none.sig" 2>&1 >/dev/null)
if printf '%s' "$err" | grep -q "authorization failed for key $dir/tta.pem: TPM_RC_AUTH_FAIL"; then
  ok "missing auth is one specific error: $err"
else
  fail "missing auth error: $err"
fi
tpm2_dictionarylockout -Q -c -p "" >/dev/null 2>&1 || true

# Persistent parent written by tpm2_encodeobject.
check "tpm2_evictcontrol H-2 to 0x81000201" tpm2_evictcontrol -Q -C o -c "$dir/h2.ctx" 0x81000201
check "tpm2_create under the persistent parent" tpm2_create -Q -C 0x81000201 -G ecc256 -u "$dir/tp.pub" -r "$dir/tp.priv"
check "tpm2_encodeobject with persistent parent" tpm2_encodeobject -C 0x81000201 -u "$dir/tp.pub" -r "$dir/tp.priv" -o "$dir/tp.pem"
check "wimse-tpm sign with a key under persistent parent" sh -c \
  "'$W' pubkey --key '$dir/tp.pem' >'$dir/tp.pubkey' && '$W' sign --key '$dir/tp.pem' --empty-auth --in '$dir/msg' --out '$dir/tp.sig'"
check "verify persistent-parent key signature" verify "$dir/tp.pubkey" "$dir/tp.sig"
check "evict persistent parent" tpm2_evictcontrol -Q -C o -c 0x81000201

# 3. wimse-tpm -> tpm2-openssl and tpm2_sign
check "wimse-tpm keygen P-256" "$W" keygen --out "$dir/ours.pem" --pubout "$dir/ours.pub"
check "tpm2-openssl reads our public key" sh -c \
  "openssl pkey -provider tpm2 -provider default -in '$dir/ours.pem' -pubout -out '$dir/ours.t2o.pub' && cmp '$dir/ours.pub' '$dir/ours.t2o.pub'"
openssl dgst -sha256 -binary -out "$dir/msg.sha256" "$dir/msg"
# ?provider=tpm2: otherwise OpenSSL 3.0 hands the signature to the default provider, which has
# only the public half ("missing private key").
check "tpm2-openssl signs with our key" openssl pkeyutl -sign -provider tpm2 -provider default \
  -propquery '?provider=tpm2' -inkey "$dir/ours.pem" -in "$dir/msg.sha256" -out "$dir/ours.t2o.sig"
check "verify tpm2-openssl signature with our key" verify "$dir/ours.pub" "$dir/ours.t2o.sig"
# Our key with an auth value signs in tpm2-openssl with the right pass phrase. tpm2-openssl up
# to 1.2.0 reads an absent emptyAuth as TRUE (the ASN1_BOOLEAN is -1, "undefined", and it tests
# only for non-zero), never asks for the pass phrase and signs with empty auth: TPM_RC_AUTH_FAIL
# and a dictionary-attack strike. Our files therefore carry an explicit emptyAuth FALSE.
export OURS_AUTH=s3cr3t-pw
check "wimse-tpm keygen --auth-env" "$W" keygen --out "$dir/oursa.pem" --pubout "$dir/oursa.pub" \
  --auth-env OURS_AUTH
check "tpm2-openssl signs with our auth key (-passin)" openssl pkeyutl -sign -provider tpm2 \
  -provider default -propquery '?provider=tpm2' -inkey "$dir/oursa.pem" -passin env:OURS_AUTH \
  -in "$dir/msg.sha256" -out "$dir/oursa.t2o.sig"
check "openssl pkeyutl -verify: tpm2-openssl signature with our auth key" openssl pkeyutl -verify \
  -pubin -inkey "$dir/oursa.pub" -in "$dir/msg.sha256" -sigfile "$dir/oursa.t2o.sig"
check "tpm2-openssl dgst -sign with our auth key" openssl dgst -sha256 -provider tpm2 \
  -provider default -propquery '?provider=tpm2' -sign "$dir/oursa.pem" -passin env:OURS_AUTH \
  -out "$dir/oursa.dgst.sig" "$dir/msg"
check "verify tpm2-openssl dgst signature with our auth key" verify "$dir/oursa.pub" "$dir/oursa.dgst.sig"
tpm2_dictionarylockout -Q -c -p "" >/dev/null 2>&1 || true
# tpm2_load needs the TPM2B blobs (tpm2-tools 5.4 cannot read a TSS2 PEM): wimse-tpm blobs
# writes them, and they must be the two OCTET STRINGs at the end of the file (checked here
# against an independent extraction).
check "wimse-tpm blobs" "$W" blobs --key "$dir/ours.pem" --public "$dir/ours.tpub" --private "$dir/ours.tpriv"
/usr/bin/python3 - "$dir/ours.pem" "$dir/ours.tpub" "$dir/ours.tpriv" <<'PY' || fail "blobs differ from the file's OCTET STRINGs"
import base64, sys
pem = open(sys.argv[1]).read().split("-----")[2]
der = base64.b64decode("".join(pem.split()))
def tlv(b, i):
    tag = b[i]; l = b[i + 1]; i += 2
    if l & 0x80:
        n = l & 0x7f; l = int.from_bytes(b[i:i + n], "big"); i += n
    return tag, b[i:i + l], i + l
_, body, _ = tlv(der, 0)
i, items = 0, []
while i < len(body):
    t, v, i = tlv(body, i); items.append((t, v))
octets = [v for t, v in items if t == 0x04]
sys.exit(0 if open(sys.argv[2], "rb").read() == octets[-2] and open(sys.argv[3], "rb").read() == octets[-1] else 1)
PY
check "tpm2_load our key under H-2" tpm2_load -Q -C "$dir/h2.ctx" -u "$dir/ours.tpub" -r "$dir/ours.tpriv" -c "$dir/ours.ctx"
check "tpm2_sign with our key" tpm2_sign -Q -c "$dir/ours.ctx" -g sha256 -f plain -o "$dir/ours.tss.sig" "$dir/msg"
check "verify tpm2_sign signature with our key" verify "$dir/ours.pub" "$dir/ours.tss.sig"

# 4. RSA, persistence, handle: references, auth from the environment, evict.
export WIMSE_KEY_AUTH=env-secret
check "keygen rsa-2048 --persist with --auth-env" "$W" keygen --alg rsa-2048 --persist 0x81000100 \
  --auth-env WIMSE_KEY_AUTH --out "$dir/rsa.pem"
check "pubkey handle:" sh -c "'$W' pubkey --key handle:0x81000100 >'$dir/rsa.pub'"
check "sign handle: PSS" "$W" sign --key handle:0x81000100 --auth-env WIMSE_KEY_AUTH --padding pss \
  --in "$dir/msg" --out "$dir/rsa.pss"
check "verify PSS salt=32" openssl dgst -sha256 -verify "$dir/rsa.pub" -sigopt rsa_padding_mode:pss \
  -sigopt rsa_pss_saltlen:32 -signature "$dir/rsa.pss" "$dir/msg"
check "sign file PKCS#1" "$W" sign --key "$dir/rsa.pem" --auth-env WIMSE_KEY_AUTH --in "$dir/msg" --out "$dir/rsa.p1"
check "verify PKCS#1" verify "$dir/rsa.pub" "$dir/rsa.p1"
err=$("$W" keygen --persist 0x81000100 2>&1 >/dev/null)
printf '%s' "$err" | grep -q "already in use" && ok "persist on a used handle: $err" || fail "used handle: $err"
# A keygen that fails after persisting (unwritable --pubout) leaves no persistent handle behind.
if "$W" keygen --out "$dir/never.pem" --pubout /nonexistent/x.pub --persist 0x81000123 >/dev/null 2>&1; then
  fail "keygen with an unwritable --pubout succeeded"
elif tpm2_getcap -T "$WIMSE_TPM_TCTI" handles-persistent | grep -qi 0x81000123; then
  fail "failed keygen left 0x81000123 persistent"
else
  ok "failed keygen removed its persistent handle again"
fi
check "evict" "$W" evict --handle 0x81000100
err=$("$W" pubkey --key handle:0x81000100 2>&1 >/dev/null)
printf '%s' "$err" | grep -q "no persistent object at handle 0x81000100" && ok "evicted handle: $err" || fail "evicted handle: $err"
err=$("$W" evict --handle 0x81000100 2>&1 >/dev/null)
[ -n "$err" ] && ok "evict twice: $err" || fail "evict twice succeeded"
tpm2_dictionarylockout -Q -c -p "" >/dev/null 2>&1 || true
# Persistent handles: the ones this script made (0x81000100 evicted above, the tpm2-tools
# parent of part 2 removed there) must be gone; anything else is what the swtpm came with.
left=$(tpm2_getcap handles-persistent 2>/dev/null | grep -io '0x81000[12][0-9a-f]\{2\}' | tr '\n' ' ')
[ -z "$left" ] && ok "no persistent test handles left" || fail "persistent handles left: $left"

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
