#!/usr/bin/env bash
# curl (Debian 12: 7.88 with OpenSSL 3) presenting a TPM key as its TLS client key through an
# openssl.cnf that activates wimsetpm (run under tests/with_swtpm.sh; suite interop).
#
# curl --key FILE calls SSL_CTX_use_PrivateKey_file(FILE, SSL_FILETYPE_PEM), i.e.
# PEM_read_bio_PrivateKey in the default library context, which runs the decoders of every
# provider activated by OPENSSL_CONF: our TSS2 decoder turns the file into a TPM key. No engine,
# no curl option beyond --cert/--key. The server is s_server requiring a client certificate;
# curl's exit status and the server's log prove the handshake used the TPM key.
set -euo pipefail

: "${WIMSE_TPM_TCTI:?run under tests/with_swtpm.sh}"
prov_dir=${WIMSE_PROVIDER_DIR:?}
make_key=${WIMSE_MAKE_KEY:?}
export TSS2_LOG=all+none

work=$(mktemp -d /tmp/wimse-curl.XXXXXX)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }

curl -V | head -1 | grep -q "OpenSSL/3" || fail "curl does not link OpenSSL 3: $(curl -V | head -1)"

cat >openssl.cnf <<CNF
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
CNF

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key \
  -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 -days 1 -out srv.pem 2>/dev/null

for alg in ec-p256 ec-p384 rsa-2048; do
  "$make_key" "client-$alg.pem" "$alg"
  OPENSSL_CONF=$work/openssl.cnf openssl req -new -x509 -key "client-$alg.pem" \
    -subj "/CN=curl-$alg" -days 1 -out "client-$alg.crt"
  for version in 1.2 1.3; do
    port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    openssl s_server -accept "127.0.0.1:$port" -naccept 1 -www -cert srv.pem -key srv.key \
      -Verify 1 -verify_return_error -CAfile "client-$alg.crt" < <(sleep 60 2>/dev/null) >srv.log 2>&1 &
    server_pid=$!
    for _ in $(seq 1 100); do grep -q ACCEPT srv.log && break; sleep 0.05; done
    # Only OPENSSL_CONF: no WIMSE_TPM_TCTI (the tcti comes from openssl.cnf).
    env -u WIMSE_TPM_TCTI OPENSSL_CONF="$work/openssl.cnf" curl -sS --tlsv$version \
      --tls-max $version --cacert srv.pem --cert "client-$alg.crt" --key "client-$alg.pem" \
      "https://127.0.0.1:$port/" >page.html 2>curl.err || { cat curl.err srv.log >&2; fail "curl $alg TLS $version"; }
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
    # s_server -www reports the verified client certificate in the page it serves.
    grep -q "CN *= *curl-$alg" page.html || { cat page.html >&2; fail "server did not get curl's certificate ($alg)"; }
    grep -q "verify return:1" srv.log || fail "server did not verify curl's certificate ($alg)"
    echo "   curl $alg TLS $version ok"
  done
done
echo PASS
