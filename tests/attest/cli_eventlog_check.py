"""`wimse-tpm eventlog FILE [--format text|json]` against an independent replay (hashlib).

Usage: /usr/bin/python3 cli_eventlog_check.py WIMSE_TPM_BINARY

Builds, with its own code (not the C++ log builder): a crypto-agile UEFI log (sha1 + sha256
banks, a StartupLocality 3 EV_NO_ACTION event, events on PCRs 0-7 and one on PCR 17, whose
initial value is all-ones) and an ima-ng log in binary and ASCII form (one violation entry).
Checks that the json output lists every event with its digests and the replayed PCR values per
bank equal to a replay computed here with hashlib; that the text output is readable (format
line, one line per event, the digests and the PCR values); that a one-byte change of a digest
changes exactly that PCR; and that truncated, garbage and empty files fail with a clear message
and a non-zero exit.
"""
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile

WIMSE = sys.argv[1]
TMP = tempfile.mkdtemp(prefix="wimse-evlog-cli.")
FAILURES = []
BANKS = {"sha1": (0x0004, 20), "sha256": (0x000B, 32)}


def check(cond, what):
    print(("ok - " if cond else "FAIL - ") + what)
    if not cond:
        FAILURES.append(what)


def le32(v):
    return struct.pack("<I", v)


def le16(v):
    return struct.pack("<H", v)


def uefi_log():
    """Returns (bytes, events as (pcr, type, {bank: digest}), locality)."""
    spec = b"Spec ID Event03\0" + le32(0) + bytes([0, 2, 0, 2]) + le32(2)
    spec += b"".join(le16(a) + le16(s) for a, s in BANKS.values()) + b"\0"
    out = le32(0) + le32(3) + bytes(20) + le32(len(spec)) + spec
    events = []

    def add(pcr, typ, data, zero=False):
        nonlocal out
        d = {b: (bytes(s) if zero else hashlib.new(b, data).digest()) for b, (_, s) in BANKS.items()}
        out += le32(pcr) + le32(typ) + le32(2)
        out += b"".join(le16(BANKS[b][0]) + d[b] for b in BANKS)
        out += le32(len(data)) + data
        events.append((pcr, typ, d))

    add(0, 3, b"StartupLocality\0\x03", zero=True)
    for pcr in range(8):
        add(pcr, 0x1, b"cli post code %d" % pcr)
        add(pcr, 0x80000007, b"cli efi action %d" % pcr)
        add(pcr, 0x4, b"\0\0\0\0")
    add(17, 0x5, b"drtm action")
    return out, events, 3


def uefi_replay(events, locality):
    pcrs = {}
    for bank, (_, size) in BANKS.items():
        vals = {}
        for pcr, typ, d in events:
            if typ == 3:
                continue
            if pcr not in vals:
                init = bytearray(b"\xff" * size if 17 <= pcr <= 22 else bytes(size))
                if pcr == 0:
                    init[-1] = locality
                vals[pcr] = bytes(init)
            vals[pcr] = hashlib.new(bank, vals[pcr] + d[bank]).digest()
        pcrs[bank] = {str(k): v.hex() for k, v in vals.items()}
    return pcrs


def ima_entries():
    out = []
    for path, content in (("boot_aggregate", b"agg"), ("/usr/bin/agent", b"agent"),
                          ("/etc/with space.conf", b"conf"), ("/tmp/violation", None)):
        fd = hashlib.sha256(content or b"").digest()
        dng = b"sha256:\0" + fd
        nng = path.encode() + b"\0"
        td = le32(len(dng)) + dng + le32(len(nng)) + nng
        th = bytes(20) if content is None else hashlib.sha1(td).digest()
        out.append((path, fd, td, th, content is None))
    return out


def ima_binary(entries):
    return b"".join(le32(10) + th + le32(6) + b"ima-ng" + le32(len(td)) + td
                    for _, _, td, th, _ in entries)


def ima_ascii(entries):
    return "".join("10 %s ima-ng sha256:%s %s\n" % (th.hex(), fd.hex(), path)
                   for path, fd, _, th, _ in entries).encode()


def ima_replay(entries):
    pcrs = {}
    for bank, (_, size) in BANKS.items():
        v = bytes(size)
        for _, _, td, _, violation in entries:
            e = b"\xff" * size if violation else hashlib.new(bank, td).digest()
            v = hashlib.new(bank, v + e).digest()
        pcrs[bank] = {"10": v.hex()}
    return pcrs


def run(path, fmt):
    args = [WIMSE, "eventlog", path] + (["--format", fmt] if fmt else [])
    return subprocess.run(args, capture_output=True, text=True)


def write(name, data):
    p = os.path.join(TMP, name)
    with open(p, "wb") as f:
        f.write(data)
    return p


# --- UEFI ---------------------------------------------------------------------------------------
log, events, loc = uefi_log()
uefi = write("uefi.bin", log)
r = run(uefi, "json")
check(r.returncode == 0, "uefi json: exit 0 (%s)" % r.stderr.strip())
j = json.loads(r.stdout)
check(j["format"] == "tcg-pc-client-crypto-agile", "uefi json: format")
check(len(j["events"]) == len(events), "uefi json: %d events" % len(events))
check(all(e["pcr"] == ev[0] and e["type"] == ev[1] and
          e["digests"] == {b: d.hex() for b, d in ev[2].items()}
          for e, ev in zip(j["events"], events)), "uefi json: every event's PCR, type, digests")
want = uefi_replay(events, loc)
check(j["pcrs"] == want, "uefi json: replayed PCRs per bank equal the hashlib replay")
r = run(uefi, None)
t = r.stdout
check(r.returncode == 0 and t.startswith("format: tcg-pc-client-crypto-agile, %d events" % len(events)),
      "uefi text: format line")
check(t.count("- event ") == len(events), "uefi text: one line per event")
check(all(v in t for b in want for v in want[b].values()), "uefi text: every PCR value shown")
check(all(d.hex() in t for _, _, ds in events for d in ds.values()), "uefi text: every digest shown")
# One byte of the sha256 digest of the 5th event (PCR 1): exactly PCR 1 of sha256 changes.
off = log.index(events[4][2]["sha256"])
bad = bytearray(log)
bad[off] ^= 1
j2 = json.loads(run(write("uefi-bad.bin", bytes(bad)), "json").stdout)
changed = {k for k in want["sha256"] if j2["pcrs"]["sha256"][k] != want["sha256"][k]}
check(changed == {"1"} and j2["pcrs"]["sha1"] == want["sha1"],
      "uefi: one changed digest changes exactly that PCR in that bank")

# --- IMA ----------------------------------------------------------------------------------------
entries = ima_entries()
want = ima_replay(entries)
for name, data, fmt in (("ima.bin", ima_binary(entries), "ima-binary"),
                        ("ima.txt", ima_ascii(entries), "ima-ascii")):
    r = run(write(name, data), "json")
    check(r.returncode == 0, "%s json: exit 0 (%s)" % (name, r.stderr.strip()))
    j = json.loads(r.stdout)
    check(j["format"] == fmt, "%s json: format %s" % (name, fmt))
    check([e["path"] for e in j["events"]] == [e[0] for e in entries], "%s json: paths" % name)
    check([e["file_digest"] for e in j["events"]] == ["sha256:" + e[1].hex() for e in entries],
          "%s json: file digests" % name)
    check(j["pcrs"] == want, "%s json: PCR 10 per bank equals the hashlib replay" % name)
    r = run(os.path.join(TMP, name), "text")
    check(r.returncode == 0 and "/etc/with space.conf" in r.stdout and
          want["sha256"]["10"] in r.stdout and want["sha1"]["10"] in r.stdout,
          "%s text: paths and PCR 10 values shown" % name)

# --- errors -------------------------------------------------------------------------------------
cases = {
    "truncated UEFI": (log[: len(log) - 7], "truncated"),
    "truncated Spec ID": (log[:60], "truncated"),
    "truncated IMA": (ima_binary(entries)[:-3], "truncated"),
    "garbage": (bytes((i * 89 + 7) % 256 for i in range(600)), "event log"),
    "bad IMA line": (b"10 zz ima-ng sha256:00 /x\n", "line 1"),
    "empty": (b"", "empty"),
}
for what, (data, needle) in cases.items():
    r = run(write("err.bin", data), "json")
    check(r.returncode != 0 and r.stdout == "" and needle in r.stderr and
          r.stderr.startswith("wimse-tpm: eventlog:") and r.stderr.count("\n") == 1,
          "%s: one-line error mentioning %r, non-zero exit (%d: %s)" %
          (what, needle, r.returncode, r.stderr.strip()))

subprocess.run(["rm", "-rf", TMP])
print("%d failures" % len(FAILURES))
sys.exit(1 if FAILURES else 0)
