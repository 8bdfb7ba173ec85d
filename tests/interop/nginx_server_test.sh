#!/usr/bin/env bash
# nginx (Debian 12, 1.22) as a TLS server whose key is a TPM key, loaded through the wimsetpm
# provider via openssl.cnf only (run under tests/with_swtpm.sh; suite interop).
#
# nginx reads ssl_certificate_key with PEM_read_bio_PrivateKey -> our TSS2 decoders (1.22 has no
# `store:` URIs). The master loads the key (no TPM I/O: decoding is lazy), forks a worker, and the
# worker signs: the provider's TPM context reconnects after fork (pid check). nginx clears the
# environment of its workers except `env` directives, so OPENSSL_CONF and WIMSE_TPM_TCTI are
# passed with `env`. One worker: swtpm serves one TPM connection at a time (with /dev/tpmrm0 any
# number of workers work). Clients: curl and openssl s_client, both verifying the server.
set -euo pipefail

: "${WIMSE_TPM_TCTI:?run under tests/with_swtpm.sh}"
prov_dir=${WIMSE_PROVIDER_DIR:?}
make_key=${WIMSE_MAKE_KEY:?}
export TSS2_LOG=all+none
command -v nginx >/dev/null || { echo "nginx not installed (ci/setup installs nginx-light)" >&2; exit 1; }

work=$(mktemp -d /tmp/wimse-nginx.XXXXXX)
nginx_pid=""
cleanup() {
  if [ -n "$nginx_pid" ]; then kill -QUIT "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
fail() { echo "FAIL: $*" >&2; [ -f error.log ] && tail -20 error.log >&2; exit 1; }

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
[algorithm_sect]
default_properties = ?provider=default
CNF
export OPENSSL_CONF=$work/openssl.cnf

for alg in ec-p256 rsa-2048; do
  "$make_key" "srv-$alg.pem" "$alg"
  openssl req -new -x509 -key "srv-$alg.pem" -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 \
    -days 1 -out "srv-$alg.crt"
done
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p tmp
user_line=""
[ "$(id -u)" -eq 0 ] && user_line="user root;"
cat >nginx.conf <<CONF
$user_line
worker_processes 1;
daemon off;
master_process on;
error_log $work/error.log info;
pid $work/nginx.pid;
env OPENSSL_CONF;
env WIMSE_TPM_TCTI;
env TSS2_LOG;
events { worker_connections 64; }
http {
  access_log $work/access.log;
  client_body_temp_path $work/tmp;
  server {
    listen 127.0.0.1:$port ssl;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate $work/srv-ec-p256.crt;
    ssl_certificate_key $work/srv-ec-p256.pem;
    ssl_certificate $work/srv-rsa-2048.crt;
    ssl_certificate_key $work/srv-rsa-2048.pem;
    location / { return 200 "hello from a TPM key\n"; }
  }
}
CONF
nginx -t -p "$work" -c "$work/nginx.conf" >test.log 2>&1 || { cat test.log >&2; fail "nginx -t"; }
nginx -p "$work" -c "$work/nginx.conf" &
nginx_pid=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

for version in 1.2 1.3; do
  body=$(curl -sS --tlsv$version --tls-max $version --cacert srv-ec-p256.crt \
    "https://127.0.0.1:$port/") || fail "curl TLS $version (ECDSA)"
  [ "$body" = "hello from a TPM key" ] || fail "unexpected body: $body"
  echo "   curl TLS $version ok"
done
# Each key type: s_client restricted to one signature algorithm family verifies the server.
for spec in "ecdsa_secp256r1_sha256:srv-ec-p256.crt:ECDSA" \
            "rsa_pss_rsae_sha256:srv-rsa-2048.crt:RSA-PSS"; do
  IFS=: read -r sigalg cert type <<<"$spec"
  for version in -tls1_2 -tls1_3; do
    echo Q | openssl s_client -provider default -connect "127.0.0.1:$port" "$version" \
      -sigalgs "$sigalg" -CAfile "$cert" -verify_return_error >cli.log 2>&1 ||
      { cat cli.log >&2; fail "s_client $version $sigalg"; }
    grep -q "Verification: OK" cli.log || fail "server not verified ($version $sigalg)"
    grep -q "Peer signature type: $type" cli.log || fail "peer signature type ($version $sigalg)"
    echo "   s_client $version $sigalg ok"
  done
done

kill -QUIT "$nginx_pid"
wait "$nginx_pid" 2>/dev/null || true
nginx_pid=""
if grep -q "\[emerg\]\|\[crit\]" error.log; then fail "nginx logged errors"; fi
echo PASS
