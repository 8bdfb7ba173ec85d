// The TSS2 PRIVATE KEY file (draft-bottomley-tpm2-keys), shared with tpm2-openssl,
// tpm2-tss-engine and tpm2_encodeobject, so key files move between those tools and ours.
//
//   TPMKey ::= SEQUENCE {
//     type        OBJECT IDENTIFIER,              -- 2.23.133.10.1.3 loadable key
//     emptyAuth   [0] EXPLICIT BOOLEAN OPTIONAL,
//     policy      [1] EXPLICIT SEQUENCE OF TPMPolicy OPTIONAL,
//     secret      [2] EXPLICIT OCTET STRING OPTIONAL,
//     authPolicy  [3] EXPLICIT SEQUENCE OF TPMAuthPolicy OPTIONAL,
//     description [4] EXPLICIT UTF8String OPTIONAL,
//     rsaParent   [5] EXPLICIT BOOLEAN OPTIONAL,
//     parent      INTEGER,
//     pubkey      OCTET STRING,                    -- marshalled TPM2B_PUBLIC (with size)
//     privkey     OCTET STRING }                   -- marshalled TPM2B_PRIVATE (with size)
//
// Writing is strict DER (TRUE is 0xFF, the parent an unsigned INTEGER). Reading is lenient
// where peers are known to deviate: any non-zero BOOLEAN is TRUE, an absent emptyAuth means
// auth required, a negative parent is read as 32-bit two's complement, parent 0 means
// 0x40000001, and blobs without the TPM2B size prefix are accepted. Policies, importable keys
// and sealed data are refused with a clear reason (unsupported, so never half-used).
#ifndef WIMSE_KEYFILE_TSS2_KEY_H_
#define WIMSE_KEYFILE_TSS2_KEY_H_

#include <cstdint>
#include <string>

#include "util/bytes.h"
#include "util/result.h"

namespace wimse {

inline constexpr uint32_t kOwnerHierarchyParent = 0x40000001;  // TPM2_RH_OWNER

struct Tss2KeyFile {
  bool empty_auth = true;
  // True when the file carries the emptyAuth field at all. An explicit FALSE is ambiguous in
  // the wild (tpm2_encodeobject 5.4 writes FALSE for keys WITHOUT auth, tpm2-tools #3458;
  // tpm2-openssl, tpm2-tss-engine and WorkloadKey::Create write FALSE for keys WITH auth); an
  // absent field is the draft's "auth required" (wimse-tpm wrote that before, and so do some
  // other writers), but tpm2-openssl <= 1.2.0 and tpm2-tss-engine read an absent field as TRUE
  // and never ask for the pass phrase. Writers: with empty_auth false, an explicit FALSE is
  // written only when this is true (WorkloadKey::Create sets it; a file read without the field
  // is re-encoded without it).
  bool empty_auth_present = false;
  uint32_t parent = kOwnerHierarchyParent;
  bool rsa_parent = false;
  Bytes public_blob;   // marshalled TPM2B_PUBLIC, including the 2-byte size
  Bytes private_blob;  // marshalled TPM2B_PRIVATE, including the 2-byte size (wrapped by the
                       // parent: opaque outside the TPM, not a secret)
};

Result<Tss2KeyFile> ParseTss2KeyDer(ByteView der);
// Parses the first "TSS2 PRIVATE KEY" PEM block. Other labels are an error naming the label.
Result<Tss2KeyFile> ParseTss2KeyPem(std::string_view pem);
// Reads a file holding PEM or DER.
Result<Tss2KeyFile> ReadTss2KeyFile(const std::string& path);

Result<Bytes> EncodeTss2KeyDer(const Tss2KeyFile& key);
Result<std::string> EncodeTss2KeyPem(const Tss2KeyFile& key);
// Writes the PEM atomically with mode 0600.
Status WriteTss2KeyFile(const std::string& path, const Tss2KeyFile& key);

}  // namespace wimse

#endif  // WIMSE_KEYFILE_TSS2_KEY_H_
