"""Writes the seed corpora of the attest fuzz targets (tests/attest/*_fuzzer.cc).

Usage: /usr/bin/python3 tests/data/attest/fuzz/make_seeds.py   (from the repository root)

evidence/: byte 0 = mode (see evidence_fuzzer.cc) + payload, from the recorded swtpm evidence in
tests/data/attest (good, other-key, unrestricted-signer; quotes over other selections): the CMW
records (mode 0), their evidence JSON (mode 1), and the raw TPM structures (mode 2), plus
truncated and garbled variants. eventlog/: byte 0 = parser (0 TCG, 1 IMA binary, 2 IMA ASCII,
3 detect) + a log built here (crypto-agile UEFI-like log with sha1+sha256 banks, a
StartupLocality event and a vendor-info Spec ID; ima-ng binary and ASCII lists with a violation
entry), plus truncated and garbled variants. Deterministic: re-running writes the same files.
Crashing inputs found by ci/fuzz are kept as crash-*.bin next to these and are not rewritten.
"""
import base64
import hashlib
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.dirname(HERE)


def b64u(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def write(sub, name, data):
    d = os.path.join(HERE, sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def variants(sub, name, data):
    """The input, a truncation at 1/3 and 2/3, and two garbled copies."""
    write(sub, name, data)
    for frac in (3, 2):
        write(sub, "%s.trunc%d" % (name, frac), data[: 1 + (len(data) - 1) * (frac - 1) // frac])
    g = bytearray(data)
    for i in range(1, len(g), 37):
        g[i] ^= 0x5A
    write(sub, name + ".garbled", bytes(g))
    g = bytearray(data)
    if len(g) > 40:
        g[len(g) // 2: len(g) // 2 + 4] = b"\xff\xff\xff\x7f"
    write(sub, name + ".bigsize", bytes(g))


def piece(b):
    return struct.pack(">I", len(b)) + b


def evidence_seeds():
    nonce = bytes(range(32))
    for rec in ("good", "other-key", "unrestricted-signer"):
        cmw = open(os.path.join(DATA, rec + ".cmw.json"), "rb").read()
        variants("evidence", rec + ".cmw", b"\x00" + cmw)
        doc = b64u(json.loads(cmw)[1])
        variants("evidence", rec + ".json", b"\x01" + doc)
        e = json.loads(doc)
        q = e["quotes"][0]
        pcrs = b"".join(bytes([int(i)]) + b64u(v) for i, v in sorted(
            q["pcrs"]["values"].items(), key=lambda kv: int(kv[0])))
        k = e["keys"][0]
        raw = b"\x02" + b"".join(piece(x) for x in (
            nonce, b64u(e["ak"]["public"]), b64u(q["attest"]), b64u(q["signature"]), pcrs,
            b64u(k["public"]), b64u(k["certify"]["attest"]), b64u(k["certify"]["signature"])))
        variants("evidence", rec + ".raw", raw)
        if rec == "good":
            ak = b64u(e["ak"]["public"])
            for sel in ("quote-sel0-6", "quote-sel0-7+16", "quote-sha1"):
                msg = open(os.path.join(DATA, sel + ".msg"), "rb").read()
                sig = open(os.path.join(DATA, sel + ".sig"), "rb").read()
                write("evidence", sel + ".raw", b"\x02" + b"".join(
                    piece(x) for x in (nonce, ak, msg, sig, pcrs)))
            # With event logs attached (they do not replay to these PCRs: the mismatch path).
            write("evidence", "good-with-logs.raw", raw + piece(tcg_log()) + piece(ima_binary()))


def le32(v):
    return struct.pack("<I", v)


def le16(v):
    return struct.pack("<H", v)


def tcg_log(vendor=b"", extra_alg=False):
    algs = [(0x0004, 20), (0x000B, 32)] + ([(0x000C, 48)] if extra_alg else [])
    spec = b"Spec ID Event03\0" + le32(0) + bytes([0, 2, 0, 2]) + le32(len(algs))
    spec += b"".join(le16(a) + le16(s) for a, s in algs) + bytes([len(vendor)]) + vendor
    out = le32(0) + le32(3) + bytes(20) + le32(len(spec)) + spec

    def ev(pcr, typ, data, digests=None):
        ds = digests or [(a, hashlib.new({4: "sha1", 11: "sha256", 12: "sha384"}[a], data).digest())
                         for a, _ in algs]
        return (le32(pcr) + le32(typ) + le32(len(ds)) + b"".join(le16(a) + d for a, d in ds) +
                le32(len(data)) + data)

    out += ev(0, 3, b"StartupLocality\0\x03", [(a, bytes(s)) for a, s in algs])
    out += ev(0, 0x8, b"wimse-tpm test S-CRTM version")
    for pcr in range(8):
        out += ev(pcr, 0x80000001, ("firmware %d" % pcr).encode())
        out += ev(pcr, 4, b"\0\0\0\0")
    out += ev(4, 0x80000003, b"\\EFI\\BOOT\\BOOTX64.EFI")
    out += ev(5, 0x80000007, b"Exit Boot Services Invocation")
    out += ev(17, 0x80000001, b"drtm")
    return out


def ima_entries():
    out = []
    for path, content in (("boot_aggregate", b"agg"), ("/usr/bin/bash", b"bash"),
                          ("/etc/file with spaces", b"x"), ("/violation", None)):
        dng = b"sha256:\0" + hashlib.sha256(content or b"").digest()
        nng = path.encode() + b"\0"
        td = le32(len(dng)) + dng + le32(len(nng)) + nng
        th = bytes(20) if content is None else hashlib.sha1(td).digest()
        out.append((path, dng, td, th))
    return out


def ima_binary():
    return b"".join(le32(10) + th + le32(6) + b"ima-ng" + le32(len(td)) + td
                    for _, _, td, th in ima_entries())


def ima_ascii():
    return "".join("10 %s ima-ng sha256:%s %s\n" % (th.hex(), dng[8:].hex(), path)
                   for path, dng, _, th in ima_entries()).encode()


def eventlog_seeds():
    variants("eventlog", "uefi.tcg", b"\x00" + tcg_log())
    variants("eventlog", "uefi-vendor-sha384.tcg", b"\x00" + tcg_log(b"vendor", True))
    variants("eventlog", "ima.bin", b"\x01" + ima_binary())
    variants("eventlog", "ima.txt", b"\x02" + ima_ascii())
    write("eventlog", "uefi.detect", b"\x03" + tcg_log())
    write("eventlog", "ima.bin.detect", b"\x03" + ima_binary())
    write("eventlog", "ima.txt.detect", b"\x03" + ima_ascii())
    write("eventlog", "empty", b"\x03")


if __name__ == "__main__":
    evidence_seeds()
    eventlog_seeds()
