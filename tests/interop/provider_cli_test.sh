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
# The private key never comes out: writing it (PKCS#8) must fail.
if openssl pkey "${P[@]}" -in key.pem -out /dev/null 2>/dev/null; then
  fail "openssl pkey wrote a private key"
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
  local name=$1 version=$2 mode=$3
  local -a client
  if [ "$mode" = flags ]; then
    client=(openssl s_client "${P[@]}")
  else
    client=("${CNF[@]}" openssl s_client)
  fi
  local port
  port=$(free_port)
  # s_server reads stdin; keep it open so it does not quit before the client connects.
  sleep 60 | openssl s_server -accept "127.0.0.1:$port" -naccept 1 "$version" \
    -cert srv.pem -key srv.key -Verify 1 -verify_return_error -CAfile cert.pem \
    >"srv-$name.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do
    grep -q ACCEPT "srv-$name.log" && break
    sleep 0.05
  done
  local rc=0
  echo Q | "${client[@]}" -connect "127.0.0.1:$port" "$version" \
    -cert cert.pem -key key.pem -CAfile srv.pem -verify_return_error \
    >"cli-$name.log" 2>&1 || rc=$?
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  if [ "$rc" -ne 0 ]; then
    cat "cli-$name.log" "srv-$name.log" >&2
    fail "$name: s_client exit code $rc"
  fi
  grep -q "^subject=CN = test" "srv-$name.log" ||
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

step "5. no transient objects left"
left=$(tpm2_getcap -T "$WIMSE_TPM_TCTI" handles-transient)
[ -z "$left" ] || fail "transient objects left in the TPM: $left"
echo "PASS"
