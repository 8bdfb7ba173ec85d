#!/usr/bin/env bash
# Checks ci/swtpm: several private swtpms started at the same time (sharing one fresh localca CA
# directory, as ci/test does) each answer tpm2-tools on their own port, hold EK certificates in
# NV that are byte-identical to DIR/ekcerts and chain to DIR/ca, have distinct endorsement seeds,
# and `stop` leaves no live process and is idempotent.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
swtpm="$root/ci/swtpm"
work=$(mktemp -d /tmp/wimse-swtpm-test.XXXXXX)
n=3
pids=()
cleanup() {
  local i
  for ((i = 0; i < n; i++)); do "$swtpm" stop "$work/tpm$i" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

export WIMSE_SWTPM_CA_DIR="$work/shared-ca"   # created by the first of the parallel starts

for ((i = 0; i < n; i++)); do
  "$swtpm" start "$work/tpm$i" >"$work/tcti$i" 2>"$work/err$i" &
  pids+=($!)
done
for ((i = 0; i < n; i++)); do
  wait "${pids[$i]}" || { cat "$work/err$i" >&2; fail "start $i"; }
done

declare -A seen_port seen_ek
for ((i = 0; i < n; i++)); do
  d="$work/tpm$i"
  [ "$(wc -l <"$work/tcti$i")" -eq 1 ] || fail "stdout of start $i is not exactly one line"
  tcti=$(cat "$work/tcti$i")
  [[ "$tcti" =~ ^swtpm:host=127\.0\.0\.1,port=([0-9]+)$ ]] || fail "bad TCTI '$tcti'"
  port=${BASH_REMATCH[1]}
  [ -z "${seen_port[$port]:-}" ] || fail "port $port used twice"
  seen_port[$port]=1
  [ ! -s "$work/err$i" ] || { cat "$work/err$i" >&2; fail "start $i wrote to stderr"; }

  rnd=$(tpm2_getrandom -T "$tcti" 8 --hex)
  [[ "$rnd" =~ ^[0-9a-f]{16}$ ]] || fail "getrandom on $tcti gave '$rnd'"
  nv=$(tpm2_nvreadpublic -T "$tcti")
  grep -q '^0x1c00002:' <<<"$nv" || fail "no RSA EK cert index on $tcti"
  grep -q '^0x1c00016:' <<<"$nv" || fail "no ECC EK cert index on $tcti"
  handles=$(tpm2_getcap -T "$tcti" handles-persistent)
  grep -q '0x81010001' <<<"$handles" || fail "no persistent RSA EK on $tcti"

  for pair in 0x1c00002:ek-rsa2048 0x1c00016:ek-secp384r1; do
    idx=${pair%%:*}
    name=${pair#*:}
    size=$(stat -c %s "$d/ekcerts/$name.crt")
    tpm2_nvread -T "$tcti" -C o -s "$size" -o "$work/nv$i-$name.der" "$idx"
    cmp -s "$work/nv$i-$name.der" "$d/ekcerts/$name.crt" || fail "NV $idx differs from $name.crt"
    openssl x509 -inform der -in "$d/ekcerts/$name.crt" -out "$work/$name$i.pem"
    openssl verify -CAfile "$d/ca/swtpm-localca-rootca-cert.pem" \
      -untrusted "$d/ca/issuercert.pem" "$work/$name$i.pem" >/dev/null ||
      fail "$name of tpm$i does not chain to DIR/ca"
  done
  ek=$(openssl x509 -in "$work/ek-rsa2048$i.pem" -noout -pubkey | sha256sum | cut -c1-64)
  [ -z "${seen_ek[$ek]:-}" ] || fail "two swtpms share an EK (seeds not fresh)"
  seen_ek[$ek]=1
  cmp -s "$d/ca/issuercert.pem" "$WIMSE_SWTPM_CA_DIR/issuercert.pem" || fail "DIR/ca is not the shared CA"
  [ -z "$(find /etc /var/lib/swtpm-localca -newer "$work/tcti0" -name '*swtpm*' 2>/dev/null)" ] ||
    fail "something under /etc or /var/lib changed"
done

# A second start on a running DIR must refuse, not start a twin.
if "$swtpm" start "$work/tpm0" >/dev/null 2>&1; then fail "start on a running DIR succeeded"; fi

declare -a tpm_pids
for ((i = 0; i < n; i++)); do tpm_pids+=("$(cat "$work/tpm$i/swtpm.pid")"); done
for ((i = 0; i < n; i++)); do "$swtpm" stop "$work/tpm$i"; done
for ((i = 0; i < n; i++)); do
  p=${tpm_pids[$i]}
  if [ -r "/proc/$p/stat" ] && ! awk '{exit !($3 == "Z")}' "/proc/$p/stat"; then
    fail "swtpm $p still running after stop"
  fi
  [ ! -e "$work/tpm$i/swtpm.pid" ] || fail "pid file left"
  "$swtpm" stop "$work/tpm$i" || fail "second stop not idempotent"
done
for port in "${!seen_port[@]}"; do
  if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
    fail "port $port still answers after stop"
  fi
done
"$swtpm" stop "$work/never-started" || fail "stop of a never-started DIR failed"
echo "ci/swtpm: $n parallel swtpms OK"
