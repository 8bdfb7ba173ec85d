"""Writes a copy of a wimse-tpm TSS2 key file without its emptyAuth field.

Usage: strip_empty_auth.py IN.pem OUT.pem

IN must be a key file as `wimse-tpm keygen --auth-*` writes it: an outer SEQUENCE with a
one-byte long-form length (0x30 0x81 LEN), the 8-byte type OID, then an explicit emptyAuth FALSE
(A0 03 01 01 00). The copy drops those 5 bytes and shrinks the outer length: a file in the
draft's "auth required" form, as wimse-tpm wrote before it wrote the field. Test-only.
"""
import base64
import sys


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    der = base64.b64decode("".join(open(src).read().split("-----")[2].split()))
    assert der[0] == 0x30 and der[1] == 0x81 and der[11:16] == bytes([0xA0, 3, 1, 1, 0]), \
        "not a wimse-tpm key file with an explicit emptyAuth FALSE"
    body = der[3:11] + der[16:]
    der = bytes([0x30, 0x81, len(body)]) + body
    b64 = base64.b64encode(der).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    with open(dst, "w") as out:
        out.write("-----BEGIN TSS2 PRIVATE KEY-----\n" + "\n".join(lines) +
                  "\n-----END TSS2 PRIVATE KEY-----\n")


if __name__ == "__main__":
    main()
