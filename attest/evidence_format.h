// The "tpm2-evidence v1" document (docs: rats-tpm §2.5) and its CMW wrapper
// (draft-ietf-rats-msg-wrap-23, JSON record `[type, base64url(value), ind]`).
//
// Every TPM object is carried as the exact bytes the TPM produced (TPMS_ATTEST is the content
// of the TPM2B_ATTEST the TPM returned; TPM2B_PUBLIC and TPMT_SIGNATURE are marshalled by
// tss2-mu, which is canonical). Nothing is re-marshalled on the verifier side: Names and
// digests are computed over the bytes received. Unknown members are ignored; missing required
// members, wrong JSON types, duplicate member names and non-canonical base64url are errors.
//
// Pure: no TPM, no I/O. Thread-compatible.
#ifndef WIMSE_ATTEST_EVIDENCE_FORMAT_H_
#define WIMSE_ATTEST_EVIDENCE_FORMAT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/bytes.h"
#include "util/result.h"

namespace wimse::attest {

// Media type of the evidence document inside the CMW record.
// Verifier nonces (qualifying data) shorter than this are refused by the producer and, by
// default, by the verifier (AppraisalOptions::min_nonce_size): 128 bits, field case C01.
inline constexpr size_t kMinNonceSize = 16;

inline constexpr char kEvidenceMediaType[] = "application/vnd.wimse-tpm.tpm2-evidence+json";
// Media type of the CMW record itself (HTTP Content-Type when the record is sent).
inline constexpr char kCmwMediaType[] = "application/cmw+json";
// CMW conceptual-message indicator: evidence (draft-ietf-rats-msg-wrap-23 §"ind": bit 2 = 4).
inline constexpr uint32_t kCmwIndEvidence = 4;
// The `profile` member of a tpm2-evidence v1 document (a tag URI, RFC 4151).
inline constexpr char kEvidenceProfile[] = "tag:wimse-tpm,2026:attest/tpm2-evidence/v1";
// Upper bound on the size of a CMW record or evidence document we parse (rats-tpm §3.7).
inline constexpr size_t kMaxEvidenceSize = 2 * 1024 * 1024;
// Upper bound on JSON nesting (arrays and objects) in a CMW record or evidence document,
// enforced while parsing: deeper input is refused before it is built (evidence nests 5 deep).
inline constexpr int kMaxEvidenceJsonDepth = 32;

// A TPM-signed attestation: TPMS_ATTEST bytes plus the marshalled TPMT_SIGNATURE over them.
struct SignedAttest {
  Bytes attest;
  Bytes signature;
};

// One quote with the PCR values it covers (the values are only claims until the verifier has
// recomputed the quote's pcrDigest from them).
struct QuoteEvidence {
  SignedAttest quote;
  std::string bank;                // "sha256", "sha384", "sha512", "sha1"
  std::map<uint32_t, Bytes> pcrs;  // PCR index -> value
};

// TPM2_CertifyCreation of a key by the AK (keys[i].creation, optional): the TPMS_ATTEST of type
// TPM_ST_ATTEST_CREATION with its signature, and the TPM2B_CREATION_DATA (with size prefix)
// TPM2_Create returned for the key, whose digest the attestation's creationHash must be.
struct CreationEvidence {
  Bytes creation_data;
  SignedAttest certify;
};

// A key certified by the AK (TPM2_Certify), and its creation when the attester kept it.
struct KeyEvidence {
  Bytes public_blob;  // TPM2B_PUBLIC of the certified key, with size prefix
  SignedAttest certify;
  std::optional<CreationEvidence> creation;  // absent: creation not certified
};

// An event log as collected (raw bytes, never re-encoded).
struct LogEvidence {
  std::string format;  // "tcg-pc-client-crypto-agile", "ima-binary", "ima-ascii"
  Bytes data;
};

struct Tpm2Evidence {
  std::string profile = kEvidenceProfile;
  Bytes nonce;      // informative echo; the verifier uses its own copy
  Bytes ak_public;  // TPM2B_PUBLIC of the AK, with size prefix
  std::vector<QuoteEvidence> quotes;
  std::vector<KeyEvidence> keys;
  std::optional<LogEvidence> uefi_log;  // logs.uefi
  std::optional<LogEvidence> ima_log;   // logs.ima
  std::string swname;                   // attester software (informative)
  std::string swversion;
};

// Serialises the document as compact JSON.
std::string EncodeEvidenceJson(const Tpm2Evidence& evidence);
// Parses a tpm2-evidence v1 document. Errors are Layer::kParse with the offending member. The
// JSON reader is strict RFC 8259 (valid UTF-8, no lone surrogates, no BOM, finite numbers) plus
// no duplicate member names and at most kMaxEvidenceJsonDepth levels of nesting.
Result<Tpm2Evidence> DecodeEvidenceJson(std::string_view json);

// Wraps a document into a CMW JSON record `[kEvidenceMediaType, b64url(json), 4]`.
std::string WrapCmw(std::string_view evidence_json);
// Unwraps a CMW JSON record: exactly 2 or 3 elements, type == kEvidenceMediaType, value
// canonical base64url, ind (if present) an integer with the evidence bit set and no bits
// outside the defined five. Returns the evidence JSON text.
Result<std::string> UnwrapCmw(std::string_view cmw_json);

// Name of a TPM hash algorithm as used in `bank` ("sha256"), and back. Unknown -> error.
Result<uint16_t> BankAlgFromName(std::string_view name);
std::string BankNameFromAlg(uint16_t alg);

}  // namespace wimse::attest

#endif  // WIMSE_ATTEST_EVIDENCE_FORMAT_H_
