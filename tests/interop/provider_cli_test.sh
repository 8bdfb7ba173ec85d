#!/usr/bin/env bash
# The wimsetpm provider through unmodified OpenSSL programs, against a private swtpm (run under
# tests/with_swtpm.sh; suite interop). Needs WIMSE_PROVIDER_DIR (build dir holding wimsetpm.so)
# and WIMSE_MAKE_KEY (tests/provider/make_key.cc: WorkloadKey::Create + Save, the same file
# `wimse-tpm keygen --out key.pem` writes).
#
#  1. key from WorkloadKey::Create; `openssl pkey -pubout`, `openssl req -x509`, `openssl dgst
#     -sign`, `openssl pkeyutl -sign`, each checked in software without the provider;
#  2. mutual TLS 1.3 and 1.2: s_server (software key, -Verify 1 -verify_return_error) accepts
#     s_client's TPM-backed client certificate;
#  3. the same through openssl.cnf (module=, tcti=, default_properties) with no -provider flags
#     and no WIMSE_TPM_TCTI in the environment;
#  4. TSS2 key files exchanged with Debian's tpm2-openssl 1.1.1 in both directions (its TLS
#     path is broken, provider-guide §13, so it is used as a key-file peer only);
#  5. no transient objects left in the TPM.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)  # helper scripts beside this one

: "${WIMSE_TPM_TCTI:?run under tests/with_swtpm.sh}"
prov_dir=${WIMSE_PROVIDER_DIR:?}
make_key=${WIMSE_MAKE_KEY:?}
export TSS2_LOG=all+none

work=$(mktemp -d /tmp/wimse-provider-cli.XXXXXX)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

# Order matters on OpenSSL 3.0: an unqualified fetch returns the implementation of the provider
# activated first, and libssl drops the P-256/P-384 TLS groups when the "EC" keymgmt it fetches
# is ours. Load default first (or set default_properties = ?provider=default, step 3).
P=(-provider-path "$prov_dir" -provider default -provider wimsetpm)

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
step() { echo "== $*"; }

step "1. WorkloadKey::Create + openssl pkey/req/dgst/pkeyutl"
"$make_key" key.pem
grep -q -- "-----BEGIN TSS2 PRIVATE KEY-----" key.pem || fail "keygen did not write a TSS2 key"
openssl pkey "${P[@]}" -in key.pem -pubout -out key.pub
openssl pkey -pubin -in key.pub -noout -text | grep -q "ASN1 OID: prime256v1" ||
  fail "public key is not P-256"
# The private key never comes out: "writing the private key" writes the TSS2 file back (the
# TPM-wrapped blob), -text shows the public half only, and a software-key format fails.
openssl pkey "${P[@]}" -in key.pem -out key-again.pem
cmp -s key.pem key-again.pem || fail "openssl pkey -out did not write the same TSS2 file"
openssl pkey "${P[@]}" -in key.pem -text -noout >key.txt
grep -q "Private-Key: held in the TPM (not exportable)" key.txt || fail "pkey -text"
if grep -q "priv:" key.txt; then fail "pkey -text printed a private key"; fi
# ... and the public point it prints is the key's (same hex block as the software SPKI's -text).
openssl pkey -pubin -in key.pub -noout -text | sed -n '/^pub:/,/^ASN1 OID/p' >pub-sw.txt
sed -n '/^pub:/,/^ASN1 OID/p' key.txt >pub-tpm.txt
[ -s pub-sw.txt ] && cmp -s pub-sw.txt pub-tpm.txt ||
  { diff pub-sw.txt pub-tpm.txt; fail "pkey -text: public point differs from the SPKI's"; }
# A pass-phrase-encrypted TSS2 file does not exist: -aes256 fails with our reason instead of
# writing the file unencrypted and exiting 0.
if openssl pkey "${P[@]}" -in key.pem -aes256 -passout pass:x -out enc.pem 2>err.txt; then
  fail "pkey -aes256 succeeded (the TSS2 file was written unencrypted)"
fi
grep -q "cannot be encrypted with a pass phrase" err.txt || { cat err.txt; fail "-aes256 reason"; }
if openssl pkey "${P[@]}" -in key.pem -traditional -out /dev/null 2>/dev/null; then
  fail "openssl pkey wrote a traditional (software) private key"
fi
openssl req "${P[@]}" -new -x509 -key key.pem -subj /CN=test -days 1 -out cert.pem
openssl verify -CAfile cert.pem cert.pem >/dev/null || fail "self-signed cert does not verify"
openssl x509 -in cert.pem -noout -pubkey | cmp -s - key.pub || fail "cert key != key.pub"
openssl x509 -in cert.pem -noout -text | grep -q "Signature Algorithm: ecdsa-with-SHA256" ||
  fail "unexpected certificate signature algorithm"
head -c 10000 /dev/urandom >msg.bin
openssl dgst "${P[@]}" -sha256 -sign key.pem -out msg.sig msg.bin
openssl dgst -sha256 -verify key.pub -signature msg.sig msg.bin >/dev/null ||
  fail "dgst signature does not verify in software"
openssl dgst -sha256 -binary msg.bin >msg.dgst
openssl pkeyutl "${P[@]}" -sign -inkey key.pem -in msg.dgst -out msg.sig2
openssl pkeyutl -verify -pubin -inkey key.pub -in msg.dgst -sigfile msg.sig2 >/dev/null ||
  fail "pkeyutl signature does not verify in software"
# The same key through the provider's own store scheme.
openssl pkeyutl "${P[@]}" -sign -inkey "tpmkey:file=$work/key.pem" -in msg.dgst -out msg.sig3
openssl pkeyutl -verify -pubin -inkey key.pub -in msg.dgst -sigfile msg.sig3 >/dev/null ||
  fail "tpmkey: store signature does not verify"

step "2. mutual TLS with s_server / s_client"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key \
  -subj /CN=server -days 1 -out srv.pem 2>/dev/null

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# tls_round NAME VERSION_FLAG flags|cnf: one handshake, checked on both sides. `flags` loads the
# provider with s_client's -provider options; `cnf` only through openssl.cnf.
tls_round() {
  local name=$1 version=$2 mode=$3 ckey=${4:-key.pem} ccert=${5:-cert.pem} subject=${6:-test}
  local -a client
  if [ "$mode" = flags ]; then
    client=(openssl s_client "${P[@]}")
  else
    client=("${CNF[@]}" openssl s_client)
  fi
  local port
  port=$(free_port)
  # s_server reads stdin; keep it open so it does not quit before the client connects (process
  # substitution, so `wait` waits for s_server only, not for the sleep).
  openssl s_server -accept "127.0.0.1:$port" -naccept 1 "$version" \
    -cert srv.pem -key srv.key -Verify 1 -verify_return_error -CAfile "$ccert" \
    < <(sleep 60 2>/dev/null) >"srv-$name.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do
    grep -q ACCEPT "srv-$name.log" && break
    sleep 0.05
  done
  local rc=0
  echo Q | "${client[@]}" -connect "127.0.0.1:$port" "$version" \
    -cert "$ccert" -key "$ckey" -CAfile srv.pem -verify_return_error \
    >"cli-$name.log" 2>&1 || rc=$?
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  if [ "$rc" -ne 0 ]; then
    cat "cli-$name.log" "srv-$name.log" >&2
    fail "$name: s_client exit code $rc"
  fi
  grep -q "^subject=CN = $subject" "srv-$name.log" ||
    { cat "srv-$name.log" >&2; fail "$name: server did not receive the client certificate"; }
  grep -q "verify return:1" "srv-$name.log" || fail "$name: server did not verify the client"
  grep -q "Verification: OK" "cli-$name.log" || fail "$name: client did not verify the server"
  echo "   $name ok"
}

tls_round tls13 -tls1_3 flags
tls_round tls12 -tls1_2 flags

step "3. openssl.cnf (no -provider flags, no WIMSE_TPM_TCTI)"
cat >openssl.cnf <<EOF
openssl_conf = openssl_init

[openssl_init]
providers = provider_sect
alg_section = algorithm_sect

[provider_sect]
default = default_sect
wimsetpm = wimsetpm_sect

[default_sect]
activate = 1

[wimsetpm_sect]
module = $prov_dir/wimsetpm.so
activate = 1
tcti = $WIMSE_TPM_TCTI

[algorithm_sect]
default_properties = ?provider=default
EOF
CNF=(env -u WIMSE_TPM_TCTI OPENSSL_CONF="$work/openssl.cnf")
"${CNF[@]}" openssl list -providers | grep -q "wimse-tpm TPM 2.0 workload key provider" ||
  fail "openssl.cnf did not load the provider"
"${CNF[@]}" openssl pkeyutl -sign -inkey key.pem -in msg.dgst -out msg.sig4
openssl pkeyutl -verify -pubin -inkey key.pub -in msg.dgst -sigfile msg.sig4 >/dev/null ||
  fail "openssl.cnf signature does not verify"
tls_round cnf-tls13 -tls1_3 cnf
tls_round cnf-tls12 -tls1_2 cnf

step "4. TSS2 key files with tpm2-openssl 1.1.1"
export TPM2OPENSSL_TCTI=$WIMSE_TPM_TCTI
openssl genpkey -provider tpm2 -algorithm EC -pkeyopt group:P-256 -out tk.pem 2>/dev/null
openssl pkey -provider tpm2 -provider default -in tk.pem -pubout -out tk.pub
openssl pkey "${P[@]}" -in tk.pem -pubout | cmp -s - tk.pub ||
  fail "our public key for the tpm2-openssl key differs from tpm2-openssl's"
openssl pkeyutl "${P[@]}" -sign -inkey tk.pem -in msg.dgst -out tk.sig
openssl pkeyutl -verify -pubin -inkey tk.pub -in msg.dgst -sigfile tk.sig >/dev/null ||
  fail "our signature with a tpm2-openssl key does not verify"
# Our key file (emptyAuth 0xFF, H-2 SRK parent) loads and signs in tpm2-openssl.
openssl pkeyutl -provider tpm2 -provider default -sign -inkey key.pem -in msg.dgst -out ours-by-tpm2.sig
openssl pkeyutl -verify -pubin -inkey key.pub -in msg.dgst -sigfile ours-by-tpm2.sig \
  >/dev/null || fail "tpm2-openssl signature with our key does not verify"
# Keys with an auth value, both ways: tpm2-openssl's (explicit emptyAuth FALSE) signs through
# our provider with -passin; ours signs in tpm2-openssl with -passin (it needs the explicit
# FALSE too: tpm2-openssl 1.1.1 reads an absent emptyAuth as TRUE and never asks).
export T2O_PW=t2o-provider-pw
openssl genpkey -provider tpm2 -algorithm EC -pkeyopt group:P-256 -pkeyopt user-auth:"$T2O_PW" \
  -out tka.pem 2>/dev/null
openssl pkey -provider tpm2 -provider default -in tka.pem -passin env:T2O_PW -pubout -out tka.pub
openssl pkeyutl "${P[@]}" -sign -inkey tka.pem -passin env:T2O_PW -in msg.dgst -out tka.sig ||
  fail "our provider cannot sign with a tpm2-openssl auth key"
openssl pkeyutl -verify -pubin -inkey tka.pub -in msg.dgst -sigfile tka.sig >/dev/null ||
  fail "our signature with a tpm2-openssl auth key does not verify"
"$WIMSE_BUILD_ROOT/src/cli/wimse-tpm" keygen --out oka.pem --pubout oka.pub --auth-env T2O_PW \
  >/dev/null || fail "keygen with --auth-env"
openssl pkeyutl -provider tpm2 -provider default -propquery '?provider=tpm2' -sign -inkey oka.pem \
  -passin env:T2O_PW -in msg.dgst -out oka-by-tpm2.sig ||
  fail "tpm2-openssl cannot sign with our auth key and its pass phrase"
openssl pkeyutl -verify -pubin -inkey oka.pub -in msg.dgst -sigfile oka-by-tpm2.sig >/dev/null ||
  fail "tpm2-openssl signature with our auth key does not verify"

step "5. genpkey in the TPM (EC P-384, RSA 2048), RSA PKCS#1 and PSS, DER key files"
# tpm2-openssl #95: with the default provider active, an unqualified genpkey fetch goes to the
# default provider (a software key). -propquery provider=wimsetpm (mandatory, no "?": a
# preference would fall back to a software key for what we do not offer) selects ours; the
# output must be TSS2.
openssl genpkey "${P[@]}" -propquery provider=wimsetpm -algorithm EC -pkeyopt group:P-384 \
  -out gen384.pem 2>/dev/null
grep -q -- "-----BEGIN TSS2 PRIVATE KEY-----" gen384.pem || fail "genpkey EC did not write TSS2"
openssl pkey "${P[@]}" -in gen384.pem -pubout -out gen384.pub
openssl pkey -pubin -in gen384.pub -noout -text | grep -q "NIST CURVE: P-384" || fail "not P-384"
openssl dgst "${P[@]}" -sha512 -sign gen384.pem -out gen384.sig msg.bin
openssl dgst -sha512 -verify gen384.pub -signature gen384.sig msg.bin >/dev/null ||
  fail "P-384/SHA-512 signature does not verify"
openssl genpkey "${P[@]}" -propquery provider=wimsetpm -algorithm RSA \
  -pkeyopt rsa_keygen_bits:2048 -out rsa.pem 2>/dev/null
grep -q -- "-----BEGIN TSS2 PRIVATE KEY-----" rsa.pem || fail "genpkey RSA did not write TSS2"
# An algorithm we do not offer fails instead of writing a software private key to disk.
if openssl genpkey "${P[@]}" -propquery provider=wimsetpm -algorithm ED25519 -out ed.pem \
  2>/dev/null; then
  fail "genpkey ED25519 with provider=wimsetpm succeeded"
fi
[ ! -s ed.pem ] || fail "genpkey ED25519 wrote a key file"
openssl pkey "${P[@]}" -in rsa.pem -pubout -out rsa.pub
openssl dgst "${P[@]}" -sha256 -sign rsa.pem -out rsa.sig msg.bin
openssl dgst -sha256 -verify rsa.pub -signature rsa.sig msg.bin >/dev/null || fail "RSA PKCS#1"
openssl dgst "${P[@]}" -sha384 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest \
  -sign rsa.pem -out rsa-pss.sig msg.bin
openssl dgst -sha384 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:48 -verify rsa.pub \
  -signature rsa-pss.sig msg.bin >/dev/null || fail "RSA-PSS salt is not the digest length"
if openssl dgst "${P[@]}" -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:20 \
  -sign rsa.pem -out /dev/null msg.bin 2>err.txt; then fail "saltlen 20 accepted"; fi
grep -q "TPM cannot produce the requested PSS salt length" err.txt || fail "saltlen error text"
# genpkey with an auth value from an environment variable or a file (never the value itself on
# the command line): the key demands it, in every OpenSSL program.
export GEN_PW=gen-s3cret
openssl genpkey "${P[@]}" -propquery provider=wimsetpm -algorithm EC -pkeyopt group:P-256 \
  -pkeyopt user-auth-env:GEN_PW -out genauth.pem 2>err.txt || { cat err.txt; fail "genpkey user-auth-env"; }
openssl pkey "${P[@]}" -in genauth.pem -pubout -passin pass: -out genauth.pub
openssl dgst "${P[@]}" -sha256 -sign genauth.pem -passin env:GEN_PW -out genauth.sig msg.bin ||
  fail "dgst -sign with the genpkey auth value"
openssl dgst -sha256 -verify genauth.pub -signature genauth.sig msg.bin >/dev/null ||
  fail "genpkey auth key signature does not verify"
if openssl dgst "${P[@]}" -sha256 -sign genauth.pem -passin pass:not-it -out x.sig msg.bin 2>err.txt; then
  fail "genpkey auth key signed with a wrong auth value"
fi
grep -q "TPM_RC_AUTH_FAIL" err.txt || { cat err.txt; fail "wrong auth for the genpkey key: no reason"; }
tpm2_dictionarylockout -T "$WIMSE_TPM_TCTI" -c >/dev/null
printf 'file-s3cret\n' >gen.auth
openssl genpkey "${P[@]}" -propquery provider=wimsetpm -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
  -pkeyopt user-auth-file:gen.auth -out genauth-rsa.pem 2>err.txt || { cat err.txt; fail "genpkey user-auth-file"; }
openssl dgst "${P[@]}" -sha256 -sign genauth-rsa.pem -passin file:gen.auth -out genauth-rsa.sig msg.bin ||
  fail "dgst -sign with the genpkey user-auth-file value"
if openssl genpkey "${P[@]}" -propquery provider=wimsetpm -algorithm EC -pkeyopt group:P-256 \
  -pkeyopt user-auth:visible -out never.pem 2>err.txt; then
  fail "genpkey accepted an auth value on the command line"
fi
grep -q "user-auth would put the auth value on the command line" err.txt ||
  { cat err.txt; fail "user-auth refusal: no reason"; }
[ ! -s never.pem ] || fail "a refused genpkey wrote a key file"
openssl pkey "${P[@]}" -in rsa.pem -outform DER -out rsa.der
openssl pkey "${P[@]}" -inform DER -in rsa.der -pubout | cmp -s - rsa.pub || fail "DER TSS2"

# TLS 1.2 and 1.3 x P-384 and RSA-2048 (rsa_pss_rsae; P-256 ran in step 2).
openssl req "${P[@]}" -new -x509 -key gen384.pem -subj /CN=p384 -days 1 -out gen384.crt
openssl req "${P[@]}" -new -x509 -key rsa.pem -subj /CN=rsa -days 1 -out rsa.crt
tls_round p384-tls13 -tls1_3 flags gen384.pem gen384.crt p384
tls_round p384-tls12 -tls1_2 flags gen384.pem gen384.crt p384
tls_round rsa-tls13 -tls1_3 flags rsa.pem rsa.crt rsa
grep -q "Peer signature type: RSA-PSS" srv-rsa-tls13.log || fail "TLS 1.3 RSA is not PSS"
tls_round rsa-tls12 -tls1_2 flags rsa.pem rsa.crt rsa
# The same handshake through a persistent key: s_client -key handle:...
"$make_key" tlsper.pem rsa-2048 --persist 0x81000101
openssl req "${P[@]}" -new -x509 -key handle:0x81000101 -subj /CN=per -days 1 -out per.crt
tls_round handle-tls13 -tls1_3 flags handle:0x81000101 per.crt per
tpm2_evictcontrol -T "$WIMSE_TPM_TCTI" -C o -c 0x81000101 >/dev/null

step "6. persistent keys: handle:0x81000100"
"$make_key" per.pem ec-p256 --persist 0x81000100
openssl pkey "${P[@]}" -in handle:0x81000100 -pubout -out per-handle.pub
openssl pkey "${P[@]}" -in per.pem -pubout | cmp -s - per-handle.pub || fail "handle: public key"
openssl pkeyutl "${P[@]}" -sign -inkey handle:0x81000100 -in msg.dgst -out per.sig
openssl pkeyutl -verify -pubin -inkey per-handle.pub -in msg.dgst -sigfile per.sig >/dev/null ||
  fail "handle: signature does not verify"
openssl pkeyutl "${P[@]}" -sign -inkey tpmkey:handle=0x81000100 -in msg.dgst -out per2.sig
if openssl pkey "${P[@]}" -in handle:0x81000123 -pubout 2>err.txt; then fail "no such handle"; fi
grep -q "no such persistent handle in the TPM" err.txt || { cat err.txt; fail "handle error"; }
# Malformed handle URIs: our reason, not OpenSSL's file-loader fallback ("calling stat").
for bad in handle:0x handle:0x8100010000 handle:-1 handle:0x40000001 handle:0x81000100junk \
    tpmkey:handle=zz tpmkey:bogus; do
  if openssl pkey "${P[@]}" -in "$bad" -pubout 2>err.txt; then fail "$bad loaded"; fi
  grep -q "wimsetpm.*malformed TPM key URI" err.txt || { cat err.txt; fail "$bad: no reason"; }
  if grep -q "calling stat" err.txt; then cat err.txt; fail "$bad: file-loader noise"; fi
done
tpm2_evictcontrol -T "$WIMSE_TPM_TCTI" -C o -c 0x81000100 >/dev/null

step "7. errors name the cause: a key from another TPM"
other=$(mktemp -d /tmp/wimse-other-tpm.XXXXXX)
other_tcti=$("$WIMSE_SOURCE_ROOT/ci/swtpm" start "$other")
WIMSE_TPM_TCTI=$other_tcti "$make_key" foreign.pem ec-p256
"$WIMSE_SOURCE_ROOT/ci/swtpm" stop "$other" >/dev/null 2>&1 || true
rm -rf "$other"
if openssl pkeyutl "${P[@]}" -sign -inkey foreign.pem -in msg.dgst -out /dev/null 2>err.txt; then
  fail "a key from another TPM signed"
fi
grep -q "wimsetpm.*key belongs to another TPM or storage primary" err.txt ||
  { cat err.txt; fail "no decoded reason for the foreign key"; }
grep -q "0x1df (tpm:parameter(1):integrity check failed)" err.txt ||
  { cat err.txt; fail "the decoded TPM response code is not printed"; }

step "8. openssl list -providers; meson install"
openssl list -provider-path "$prov_dir" -provider wimsetpm -providers >list.txt
grep -q "name: wimse-tpm TPM 2.0 workload key provider" list.txt || fail "list: name"
version=$(sed -n "s/^ *version *: *'\([0-9.]*\)'.*/\1/p" "$WIMSE_SOURCE_ROOT/meson.build" | head -1)
[ -n "$version" ] || fail "no project version in meson.build"
grep -q "version: $version\$" list.txt || { cat list.txt; fail "list: version is not $version"; }
grep -q "status: active" list.txt || fail "list: status"
modulesdir=$(pkg-config --variable=modulesdir libcrypto)
meson install -C "$WIMSE_BUILD_ROOT" --no-rebuild --tags provider --destdir "$work/dest" \
  >install.log 2>&1 || { cat install.log; fail "meson install"; }
[ -f "$work/dest$modulesdir/wimsetpm.so" ] || fail "wimsetpm.so not installed in $modulesdir"
openssl list -provider-path "$work/dest$modulesdir" -provider wimsetpm -providers |
  grep -q "status: active" || fail "installed module does not load"

step "8b. a key with an auth value: -passin gives it; without it the first signature says so"
printf 'provider auth' >auth.txt
"$WIMSE_BUILD_ROOT/src/cli/wimse-tpm" keygen --out akey.pem --pubout akey.pub --auth-file auth.txt \
  >/dev/null || fail "keygen with --auth-file"
printf 'signed with auth\n' >amsg
openssl dgst "${P[@]}" -sha256 -sign akey.pem -passin file:auth.txt -out amsg.sig amsg ||
  fail "dgst -sign with -passin file:"
openssl dgst -sha256 -verify akey.pub -signature amsg.sig amsg >/dev/null ||
  fail "signature with the auth key does not verify in software"
openssl pkey "${P[@]}" -in akey.pem -pubout -passin pass: | cmp -s - akey.pub ||
  fail "the public part of an auth key is not readable without its auth value"
# keygen writes an explicit emptyAuth FALSE (tpm2-openssl 1.1.1 reads an absent one as TRUE),
# which tpm2_encodeobject 5.4 also writes for keys without auth: an empty pass phrase is tried
# once (one dictionary-attack strike).
if openssl dgst "${P[@]}" -sha256 -sign akey.pem -passin pass: -out none.sig amsg 2>err.txt; then
  fail "signing with an empty auth value succeeded"
fi
grep -q "empty auth was tried once" err.txt ||
  { cat err.txt; fail "empty auth value: no specific reason"; }
tpm2_dictionarylockout -T "$WIMSE_TPM_TCTI" -c >/dev/null
# A file without emptyAuth (as wimse-tpm wrote before) is refused before the TPM.
/usr/bin/python3 "$here/strip_empty_auth.py" akey.pem akey-absent.pem || fail "strip emptyAuth"
if openssl dgst "${P[@]}" -sha256 -sign akey-absent.pem -passin pass: -out none.sig amsg 2>err.txt; then
  fail "signing without the auth value succeeded"
fi
grep -q "says the key has an authorization value and none was given" err.txt ||
  { cat err.txt; fail "missing auth value: no specific reason"; }
[ "$(tpm2_getcap -T "$WIMSE_TPM_TCTI" properties-variable | awk '/TPM2_PT_LOCKOUT_COUNTER/ {print $2}')" = 0x0 ] ||
  fail "the refused signature counted a dictionary-attack strike"

step "9. no transient objects left"
left=$(tpm2_getcap -T "$WIMSE_TPM_TCTI" handles-transient)
[ -z "$left" ] || fail "transient objects left in the TPM: $left"
echo "PASS"
