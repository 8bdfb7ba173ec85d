"""Field-by-field comparison of one TPMS_ATTEST between our parser and python3-tpm2-pytss.

Usage: /usr/bin/python3 pytss_compare.py ATTEST_FILE OURS_JSON

ATTEST_FILE holds raw TPMS_ATTEST bytes as the TPM produced them (the content of TPM2B_ATTEST);
OURS_JSON is what `evidence_tool parse-attest ATTEST_FILE` printed. The bytes are parsed three
ways: tpm2_pytss.types.TPMS_ATTEST.unmarshal, TPM2B_ATTEST.unmarshal of the same bytes with a
size prefix (then TPMS_ATTEST.unmarshal of its content), and a plain big-endian struct reader
written from TPM 2.0 Part 2 §10.12 (independent of tss2-mu, which both we and pytss use).
Every field must agree in all three with ours: magic, type, qualifiedSigner, extraData,
clockInfo.{clock,resetCount,restartCount,safe}, firmwareVersion, and attested.quote.{pcrSelect
(hash + bitmap), pcrDigest} or attested.certify.{name, qualifiedName}. Exit 0 when they agree, 1
with a list of differences otherwise.
"""
import json
import struct
import sys

from tpm2_pytss.types import TPM2B_ATTEST, TPMS_ATTEST

ST_ATTEST_CERTIFY = 0x8017
ST_ATTEST_QUOTE = 0x8018


def from_pytss(a):
    f = {
        "magic": int(a.magic),
        "type": int(a.type),
        "qualifiedSigner": bytes(a.qualifiedSigner.name).hex(),
        "extraData": bytes(a.extraData).hex(),
        "clock": int(a.clockInfo.clock),
        "resetCount": int(a.clockInfo.resetCount),
        "restartCount": int(a.clockInfo.restartCount),
        "safe": int(a.clockInfo.safe),
        "firmwareVersion": int(a.firmwareVersion),
    }
    if f["type"] == ST_ATTEST_QUOTE:
        q = a.attested.quote
        sels = []
        for i in range(int(q.pcrSelect.count)):
            s = q.pcrSelect.pcrSelections[i]
            size = int(s.sizeofSelect)
            sels.append({"hash": int(s.hash), "pcrSelect": bytes(s.pcrSelect[j] for j in range(size)).hex()})
        f["pcrSelect"] = sels
        f["pcrDigest"] = bytes(q.pcrDigest).hex()
    elif f["type"] == ST_ATTEST_CERTIFY:
        c = a.attested.certify
        f["name"] = bytes(c.name.name).hex()
        f["qualifiedName"] = bytes(c.qualifiedName.name).hex()
    return f


class Reader:
    def __init__(self, b):
        self.b = b
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.b):
            raise ValueError("truncated at %d" % self.pos)
        out = self.b[self.pos:self.pos + n]
        self.pos += n
        return out

    def u(self, fmt):
        return struct.unpack(">" + fmt, self.take(struct.calcsize(fmt)))[0]

    def tpm2b(self):
        return self.take(self.u("H")).hex()


def from_struct(b):
    r = Reader(b)
    f = {"magic": r.u("I"), "type": r.u("H"), "qualifiedSigner": r.tpm2b(),
         "extraData": r.tpm2b(), "clock": r.u("Q"), "resetCount": r.u("I"),
         "restartCount": r.u("I"), "safe": r.u("B"), "firmwareVersion": r.u("Q")}
    if f["type"] == ST_ATTEST_QUOTE:
        sels = []
        for _ in range(r.u("I")):
            h = r.u("H")
            sels.append({"hash": h, "pcrSelect": r.take(r.u("B")).hex()})
        f["pcrSelect"] = sels
        f["pcrDigest"] = r.tpm2b()
    elif f["type"] == ST_ATTEST_CERTIFY:
        f["name"] = r.tpm2b()
        f["qualifiedName"] = r.tpm2b()
    else:
        raise ValueError("unexpected attestation type 0x%04x" % f["type"])
    if r.pos != len(b):
        raise ValueError("%d trailing bytes" % (len(b) - r.pos))
    return f


def main():
    raw = open(sys.argv[1], "rb").read()
    ours = json.load(open(sys.argv[2]))
    a, consumed = TPMS_ATTEST.unmarshal(raw)
    problems = []
    if consumed != len(raw):
        problems.append("pytss consumed %d of %d bytes" % (consumed, len(raw)))
    b2, consumed2 = TPM2B_ATTEST.unmarshal(struct.pack(">H", len(raw)) + raw)
    inner, _ = TPMS_ATTEST.unmarshal(bytes(b2))
    views = {"pytss TPMS_ATTEST": from_pytss(a), "pytss TPM2B_ATTEST": from_pytss(inner),
             "struct reader": from_struct(raw)}
    if consumed2 != len(raw) + 2:
        problems.append("pytss TPM2B_ATTEST consumed %d of %d bytes" % (consumed2, len(raw) + 2))
    expected_keys = {"magic", "type", "qualifiedSigner", "extraData", "clock", "resetCount",
                     "restartCount", "safe", "firmwareVersion"}
    expected_keys |= ({"pcrSelect", "pcrDigest"} if ours.get("type") == ST_ATTEST_QUOTE
                      else {"name", "qualifiedName"})
    if set(ours) != expected_keys:
        problems.append("our fields %s != %s" % (sorted(ours), sorted(expected_keys)))
    for view, theirs in views.items():
        for k in sorted(expected_keys):
            if ours.get(k) != theirs.get(k):
                problems.append("%s: %s: ours %r, theirs %r" % (view, k, ours.get(k), theirs.get(k)))
    if problems:
        print("MISMATCH\n  " + "\n  ".join(problems))
        return 1
    print("ok %s: %d fields agree (type 0x%04x)" % (sys.argv[1], len(expected_keys), ours["type"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
