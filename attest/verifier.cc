#include "attest/verifier.h"

#include <openssl/err.h>
#include <openssl/rsa.h>
#include <tss2/tss2_mu.h>

#include <algorithm>
#include <cstring>

#include "attest/eventlog.h"
#include "crypto/ecdsa.h"
#include "crypto/ossl.h"
#include "crypto/public_key.h"
#include "crypto/tpm_public.h"

namespace wimse::attest {

namespace {

// TPMA_OBJECT bits an AK must have: a restricted signing key whose private part was made in
// and cannot leave this TPM (rats-tpm §3.5 A2; field case C05). A non-restricted key could
// sign a forged TPMS_ATTEST with TPM2_Sign.
constexpr uint32_t kAkRequiredAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                           TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                           TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
constexpr uint32_t kAkForbiddenAttributes = TPMA_OBJECT_DECRYPT;

// A certified workload key: non-exportable, TPM-generated, plain signing key (rats-tpm §3.4 C4).
constexpr uint32_t kKeyRequiredAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                            TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                            TPMA_OBJECT_SIGN_ENCRYPT;
constexpr uint32_t kKeyForbiddenAttributes = TPMA_OBJECT_DECRYPT | TPMA_OBJECT_RESTRICTED;

constexpr uint32_t kTpmGeneratedValue = 0xFF544347;  // TPM_GENERATED_VALUE, Part 2 §6.2

struct NamedBit {
  uint32_t bit;
  const char* name;
};
constexpr NamedBit kAttributeNames[] = {
    {TPMA_OBJECT_FIXEDTPM, "fixedTPM"},
    {TPMA_OBJECT_FIXEDPARENT, "fixedParent"},
    {TPMA_OBJECT_SENSITIVEDATAORIGIN, "sensitiveDataOrigin"},
    {TPMA_OBJECT_RESTRICTED, "restricted"},
    {TPMA_OBJECT_DECRYPT, "decrypt"},
    {TPMA_OBJECT_SIGN_ENCRYPT, "sign"},
};

// Empty when `attrs` has all `required` and none of `forbidden` bits; otherwise a description.
std::string AttributeProblems(uint32_t attrs, uint32_t required, uint32_t forbidden) {
  std::string out;
  for (const NamedBit& b : kAttributeNames) {
    if ((required & b.bit) && !(attrs & b.bit)) {
      out += (out.empty() ? "" : ", ") + std::string(b.name) + " not set";
    }
    if ((forbidden & b.bit) && (attrs & b.bit)) {
      out += (out.empty() ? "" : ", ") + std::string(b.name) + " set";
    }
  }
  return out;
}

uint32_t ReadBe32(ByteView b) {
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
}

std::string Hex16(uint32_t v) {
  return HexEncode(Bytes{static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)});
}

// Collects failures for one appraisal.
class Findings {
 public:
  void Add(Reason reason, std::string detail) {
    failures_.push_back(Failure{reason, std::move(detail)});
  }
  std::vector<Failure>& failures() { return failures_; }

 private:
  std::vector<Failure> failures_;
};

// A TPMS_ATTEST checked for magic and type and parsed. `parsed` is false when the bytes cannot
// be parsed (then magic/type results are still reported when the header was readable).
struct ParsedAttest {
  bool parsed = false;
  TPMS_ATTEST attest{};
};

// Checks the magic and type from the raw header, then unmarshals the whole structure (which
// must consume every byte). The magic is checked here and not left to tss2-mu: only newer
// tss2-mu releases refuse a wrong magic (CVE-2024-29040), and the reason must be precise.
ParsedAttest CheckAttest(ByteView bytes, uint16_t want_type, Reason malformed, Reason not_generated,
                         Reason wrong_type, const char* what, Findings& f) {
  ParsedAttest out;
  if (bytes.size() < 6) {
    f.Add(malformed, std::string(what) + " is " + std::to_string(bytes.size()) + " bytes");
    return out;
  }
  if (bytes.size() > sizeof(TPMS_ATTEST)) {
    f.Add(malformed, std::string(what) + " larger than any TPMS_ATTEST");
    return out;
  }
  uint32_t magic = ReadBe32(bytes);
  if (magic != kTpmGeneratedValue) {
    f.Add(not_generated,
          std::string(what) + " magic is 0x" + HexEncode(bytes.subspan(0, 4)) + ", not 0xff544347");
  }
  uint16_t type = static_cast<uint16_t>((bytes[4] << 8) | bytes[5]);
  if (type != want_type) {
    f.Add(wrong_type,
          std::string(what) + " type is 0x" + Hex16(type) + ", expected 0x" + Hex16(want_type));
    // A different type selects a different TPMU_ATTEST arm: do not parse it as ours.
    return out;
  }
  Bytes copy(bytes.begin(), bytes.end());
  copy[0] = 0xFF;
  copy[1] = 0x54;
  copy[2] = 0x43;
  copy[3] = 0x47;
  size_t offset = 0;
  TSS2_RC rc = Tss2_MU_TPMS_ATTEST_Unmarshal(copy.data(), copy.size(), &offset, &out.attest);
  if (rc != TSS2_RC_SUCCESS) {
    f.Add(malformed,
          std::string(what) + " does not unmarshal (tss2-mu 0x" +
              HexEncode(Bytes{static_cast<uint8_t>(rc >> 24), static_cast<uint8_t>(rc >> 16),
                              static_cast<uint8_t>(rc >> 8), static_cast<uint8_t>(rc)}) +
              ")");
    return out;
  }
  if (offset != copy.size()) {
    f.Add(malformed,
          std::string(what) + " has " + std::to_string(copy.size() - offset) + " trailing bytes");
    return out;
  }
  out.parsed = true;
  return out;
}

Result<TPMT_SIGNATURE> ParseSignature(ByteView bytes) {
  TPMT_SIGNATURE sig{};
  size_t offset = 0;
  if (bytes.size() > sizeof(TPMT_SIGNATURE) + 16) {
    return Error(Layer::kParse, "TPMT_SIGNATURE too large");
  }
  TSS2_RC rc = Tss2_MU_TPMT_SIGNATURE_Unmarshal(bytes.data(), bytes.size(), &offset, &sig);
  if (rc != TSS2_RC_SUCCESS) {
    return Error(Layer::kParse, "TPMT_SIGNATURE does not unmarshal", rc);
  }
  if (offset != bytes.size()) {
    return Error(Layer::kParse, "TPMT_SIGNATURE has trailing bytes");
  }
  return sig;
}

// The signing scheme a key's public area fixes (for restricted keys the TPM uses exactly it).
struct SigScheme {
  uint16_t alg = TPM2_ALG_NULL;
  uint16_t hash = TPM2_ALG_NULL;
};

SigScheme SchemeOf(const TPMT_PUBLIC& pub) {
  if (pub.type == TPM2_ALG_ECC) {
    return {pub.parameters.eccDetail.scheme.scheme,
            pub.parameters.eccDetail.scheme.details.anySig.hashAlg};
  }
  if (pub.type == TPM2_ALG_RSA) {
    return {pub.parameters.rsaDetail.scheme.scheme,
            pub.parameters.rsaDetail.scheme.details.anySig.hashAlg};
  }
  return {};
}

Status VerifyRsaPss(EVP_PKEY* key, HashAlg hash, ByteView digest, ByteView sig) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, "provider=default"));
  if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1) {
    return OpenSslError("EVP_PKEY_verify_init");
  }
  EvpMdPtr md(EVP_MD_fetch(nullptr, HashName(hash), "provider=default"));
  // TPMs sign PSS with the maximum salt, FIPS-mode TPMs with salt = hLen (rats-tpm §3.2 step 4,
  // field case C12): accept both by letting OpenSSL recover the salt length.
  if (!md || EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING) != 1 ||
      EVP_PKEY_CTX_set_signature_md(ctx.get(), md.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), md.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), RSA_PSS_SALTLEN_AUTO) != 1) {
    return OpenSslError("RSA-PSS parameters");
  }
  int rc = EVP_PKEY_verify(ctx.get(), sig.data(), sig.size(), digest.data(), digest.size());
  ERR_clear_error();
  if (rc != 1) {
    return Error(Layer::kPolicy, "signature does not verify");
  }
  return OkStatus();
}

// Verifies `sig_bytes` (TPMT_SIGNATURE) over `attest` with the AK. The signature's scheme must
// be the AK's own scheme (rats-tpm §3.2 step 1). Returns the scheme hash on success.
Result<HashAlg> VerifyAttestSignature(const TPMT_PUBLIC& ak, EVP_PKEY* ak_key, ByteView attest,
                                      ByteView sig_bytes) {
  WIMSE_ASSIGN_OR_RETURN(TPMT_SIGNATURE sig, ParseSignature(sig_bytes));
  SigScheme scheme = SchemeOf(ak);
  uint16_t sig_hash = 0;
  switch (sig.sigAlg) {
    case TPM2_ALG_ECDSA:
      sig_hash = sig.signature.ecdsa.hash;
      break;
    case TPM2_ALG_RSASSA:
      sig_hash = sig.signature.rsassa.hash;
      break;
    case TPM2_ALG_RSAPSS:
      sig_hash = sig.signature.rsapss.hash;
      break;
    default:
      return Error(Layer::kPolicy, "signature algorithm 0x" + Hex16(sig.sigAlg) +
                                       " is not ECDSA, RSASSA or RSAPSS");
  }
  if (sig.sigAlg != scheme.alg || sig_hash != scheme.hash) {
    return Error(Layer::kPolicy, "signature scheme 0x" + Hex16(sig.sigAlg) + "/0x" +
                                     Hex16(sig_hash) + " is not the AK scheme 0x" +
                                     Hex16(scheme.alg) + "/0x" + Hex16(scheme.hash));
  }
  WIMSE_ASSIGN_OR_RETURN(HashAlg hash, HashAlgFromTpm(sig_hash));
  WIMSE_ASSIGN_OR_RETURN(Bytes digest, Digest(hash, attest));
  if (sig.sigAlg == TPM2_ALG_ECDSA) {
    if (ak.type != TPM2_ALG_ECC) {
      return Error(Layer::kPolicy, "ECDSA signature from a non-ECC AK");
    }
    WIMSE_ASSIGN_OR_RETURN(KeyAlg alg, KeyAlgOfTpmPublic(ak));
    const TPMS_SIGNATURE_ECDSA& e = sig.signature.ecdsa;
    size_t field = CurveFieldSize(alg);
    if (e.signatureR.size == 0 || e.signatureS.size == 0 || e.signatureR.size > field ||
        e.signatureS.size > field) {
      return Error(Layer::kPolicy, "ECDSA r or s has an invalid length");
    }
    WIMSE_ASSIGN_OR_RETURN(Bytes raw,
                           EcdsaRsToRaw(ByteView(e.signatureR.buffer, e.signatureR.size),
                                        ByteView(e.signatureS.buffer, e.signatureS.size), field));
    WIMSE_RETURN_IF_ERROR(VerifyDigest(ak_key, hash, digest, raw));
    return hash;
  }
  if (ak.type != TPM2_ALG_RSA) {
    return Error(Layer::kPolicy, "RSA signature from a non-RSA AK");
  }
  const TPM2B_PUBLIC_KEY_RSA& s =
      sig.sigAlg == TPM2_ALG_RSASSA ? sig.signature.rsassa.sig : sig.signature.rsapss.sig;
  ByteView sv(s.buffer, s.size);
  if (sig.sigAlg == TPM2_ALG_RSASSA) {
    WIMSE_RETURN_IF_ERROR(VerifyDigest(ak_key, hash, digest, sv));
  } else {
    WIMSE_RETURN_IF_ERROR(VerifyRsaPss(ak_key, hash, digest, sv));
  }
  return hash;
}

// Name = nameAlg || H_nameAlg(TPMT_PUBLIC) computed over the bytes as received (the TPM2B_PUBLIC
// minus its size prefix), never over a re-marshalled structure (rats-tpm §3.1).
Result<Bytes> NameOfReceivedPublic(ByteView tpm2b_public, uint16_t name_alg) {
  WIMSE_ASSIGN_OR_RETURN(HashAlg hash, HashAlgFromTpm(name_alg));
  WIMSE_ASSIGN_OR_RETURN(Bytes digest, Digest(hash, tpm2b_public.subspan(2)));
  Bytes name{static_cast<uint8_t>(name_alg >> 8), static_cast<uint8_t>(name_alg)};
  name.insert(name.end(), digest.begin(), digest.end());
  return name;
}

// A parsed public area with its software key.
struct PublicKeyInfo {
  TPMT_PUBLIC pub{};
  EvpPkeyPtr key;
  Bytes name;
};

Result<PublicKeyInfo> ParsePublic(ByteView blob) {
  PublicKeyInfo info;
  WIMSE_ASSIGN_OR_RETURN(TPM2B_PUBLIC p, UnmarshalTpm2bPublic(blob));
  info.pub = p.publicArea;
  WIMSE_ASSIGN_OR_RETURN(info.key, PublicKeyFromTpmPublic(info.pub));
  WIMSE_ASSIGN_OR_RETURN(info.name, NameOfReceivedPublic(blob, info.pub.nameAlg));
  return info;
}

bool SameBytes(const uint8_t* a, size_t a_len, const uint8_t* b, size_t b_len) {
  return a_len == b_len && (a_len == 0 || std::memcmp(a, b, a_len) == 0);
}

// Checks the quoted selection against the expected one: exactly one bank, the expected hash,
// sizeofSelect 3..4 and an identical bitmap (rats-tpm §3.3 Q6; field case C03).
void CheckSelection(const TPML_PCR_SELECTION& sel, const PcrBankSelection& want, Findings& f) {
  if (sel.count != 1) {
    f.Add(Reason::kPcrSelectionMismatch,
          "quote selects " + std::to_string(sel.count) + " banks, expected 1");
    return;
  }
  const TPMS_PCR_SELECTION& s = sel.pcrSelections[0];
  if (s.hash != want.bank) {
    f.Add(Reason::kPcrSelectionMismatch,
          "quote bank is " + BankNameFromAlg(s.hash) + ", expected " + BankNameFromAlg(want.bank));
  }
  if (s.sizeofSelect < 3 || s.sizeofSelect > sizeof(s.pcrSelect)) {
    f.Add(Reason::kPcrSelectionMismatch,
          "quote sizeofSelect " + std::to_string(s.sizeofSelect) + " is not 3 or 4");
    return;
  }
  uint32_t mask = 0;
  for (size_t i = 0; i < s.sizeofSelect; ++i) {
    mask |= uint32_t{s.pcrSelect[i]} << (8 * i);
  }
  if (mask != want.mask) {
    f.Add(Reason::kPcrSelectionMismatch,
          "quoted PCR bitmap 0x" +
              HexEncode(Bytes{static_cast<uint8_t>(mask >> 16), static_cast<uint8_t>(mask >> 8),
                              static_cast<uint8_t>(mask)}) +
              " differs from the expected 0x" +
              HexEncode(Bytes{static_cast<uint8_t>(want.mask >> 16),
                              static_cast<uint8_t>(want.mask >> 8),
                              static_cast<uint8_t>(want.mask)}));
  }
}

// Recomputes pcrDigest from the presented values over the *quoted* selection, hashing with the
// signature scheme's hash (not the bank hash: rats-tpm §3.3 Q8, §6 #2). Returns true when the
// digest matches.
bool CheckPcrDigest(const TPMS_QUOTE_INFO& info, const QuoteEvidence& q, HashAlg sig_hash,
                    Findings& f) {
  Result<uint16_t> bank = BankAlgFromName(q.bank);
  if (!bank.ok()) {
    f.Add(Reason::kPcrValuesMismatch, bank.error().message());
    return false;
  }
  Bytes concat;
  size_t used = 0;
  for (uint32_t b = 0; b < info.pcrSelect.count; ++b) {
    const TPMS_PCR_SELECTION& s = info.pcrSelect.pcrSelections[b];
    if (s.hash != bank.value()) {
      f.Add(Reason::kPcrValuesMismatch,
            "values are for bank " + q.bank + ", quote covers " + BankNameFromAlg(s.hash));
      return false;
    }
    size_t want_size = BankDigestSize(s.hash);
    for (uint32_t i = 0; i < 8u * s.sizeofSelect && i < 8u * sizeof(s.pcrSelect); ++i) {
      if (!(s.pcrSelect[i / 8] & (1u << (i % 8)))) {
        continue;
      }
      auto it = q.pcrs.find(i);
      if (it == q.pcrs.end()) {
        f.Add(Reason::kPcrValuesMismatch, "quoted PCR " + std::to_string(i) + " has no value");
        return false;
      }
      if (it->second.size() != want_size) {
        f.Add(Reason::kPcrValuesMismatch, "PCR " + std::to_string(i) + " value is " +
                                              std::to_string(it->second.size()) + " bytes");
        return false;
      }
      concat.insert(concat.end(), it->second.begin(), it->second.end());
      ++used;
    }
  }
  if (used != q.pcrs.size()) {
    f.Add(Reason::kPcrValuesMismatch, "values presented for PCRs outside the quoted selection");
    return false;
  }
  Result<Bytes> digest = Digest(sig_hash, concat);
  if (!digest.ok() ||
      !ConstantTimeEqual(digest.value(), ByteView(info.pcrDigest.buffer, info.pcrDigest.size))) {
    f.Add(Reason::kPcrDigestMismatch, "PCR values do not hash to the quoted pcrDigest");
    return false;
  }
  return true;
}

void CheckNonce(const TPM2B_DATA& extra, const Bytes& expected, Reason reason, const char* what,
                Findings& f) {
  // Length is not secret; the content comparison is constant time (field case C01).
  if (!ConstantTimeEqual(ByteView(extra.buffer, extra.size), expected)) {
    f.Add(reason, std::string(what) + " extraData (" + std::to_string(extra.size) +
                      " bytes) is not the expected nonce");
  }
}


// Clock/reset/restart ordering per AK (rats-tpm §3.6): reset must not decrease; restart may
// only decrease together with a reset increase; within one (reset, restart) pair the clock must
// increase.
void CheckClock(const TPMS_CLOCK_INFO& now, const ClockState& last, AppraisalResult& result,
                Findings& f) {
  if (now.resetCount < last.reset_count) {
    f.Add(Reason::kClockRollback, "resetCount went back from " + std::to_string(last.reset_count) +
                                      " to " + std::to_string(now.resetCount));
    return;
  }
  if (now.resetCount > last.reset_count) {
    result.rebooted = true;
    return;
  }
  if (now.restartCount < last.restart_count) {
    f.Add(Reason::kClockRollback, "restartCount went back without a reset");
    return;
  }
  if (now.restartCount > last.restart_count) {
    result.resumed = true;
    return;
  }
  if (now.clock <= last.clock) {
    f.Add(Reason::kClockRollback, "clock did not advance since the last accepted quote (" +
                                      std::to_string(last.clock) + " -> " +
                                      std::to_string(now.clock) + ")");
  }
}

void CheckEventDigest(const Bytes& digest, const AttestationPolicy* policy, const std::string& what,
                      AppraisalResult& result, Findings& f) {
  result.event_digests.insert(digest);
  if (policy == nullptr) {
    return;
  }
  if (policy->denied_event_digests.count(digest) != 0) {
    f.Add(Reason::kEventDenied, what + " digest " + HexEncode(digest) + " is denied");
  } else if (!policy->allowed_event_digests.empty() &&
             policy->allowed_event_digests.count(digest) == 0) {
    f.Add(Reason::kEventNotAllowed, what + " digest " + HexEncode(digest) + " is not allowed");
  }
}

// Replays the logs against the quote-verified PCR values (rats-tpm §4.2, §4.4).
void CheckLogs(const Tpm2Evidence& e, uint16_t bank, uint32_t mask,
               const std::map<uint32_t, Bytes>& quoted, const AttestationPolicy* policy,
               AppraisalResult& result, Findings& f) {
  if (e.uefi_log) {
    Result<LogFormat> fmt = LogFormatFromName(e.uefi_log->format);
    Result<EventLog> log = Error(Layer::kParse, "");
    if (!fmt.ok() || *fmt != LogFormat::kTcgPcClient) {
      f.Add(Reason::kEventLogMalformed, "logs.uefi format is not tcg-pc-client-crypto-agile");
    } else if (log = ParseTcgLog(e.uefi_log->data); !log.ok()) {
      f.Add(Reason::kEventLogMalformed, log.error().message());
    } else {
      Result<std::map<uint32_t, Bytes>> replayed = ReplayLog(*log, bank);
      if (!replayed.ok()) {
        f.Add(Reason::kEventLogReplayMismatch, replayed.error().message());
      } else {
        bool ok = true;
        for (const auto& [pcr, value] : quoted) {
          if (pcr == 10 && e.ima_log) {
            continue;  // IMA's PCR, replayed below
          }
          auto it = replayed->find(pcr);
          const Bytes want = it == replayed->end() ? InitialPcrValue(pcr, bank) : it->second;
          if (!ConstantTimeEqual(want, value)) {
            ok = false;
            f.Add(Reason::kEventLogReplayMismatch,
                  "UEFI log replays PCR " + std::to_string(pcr) + " to " + HexEncode(want) +
                      ", quoted " + HexEncode(value));
          }
        }
        if (ok) {
          result.uefi_log_checked = true;
          for (const LogEvent& ev : log->events) {
            if (ev.type == kEvNoAction || !(mask & (1u << ev.pcr))) {
              continue;
            }
            CheckEventDigest(ev.digests.at(bank), policy,
                             "UEFI event (PCR " + std::to_string(ev.pcr) + ")", result, f);
          }
        }
      }
    }
  }
  if (e.ima_log) {
    Result<LogFormat> fmt = LogFormatFromName(e.ima_log->format);
    Result<EventLog> log = Error(Layer::kParse, "");
    if (!fmt.ok() || *fmt == LogFormat::kTcgPcClient) {
      f.Add(Reason::kEventLogMalformed, "logs.ima format is not ima-binary or ima-ascii");
    } else if (log = ParseEventLog(*fmt, e.ima_log->data); !log.ok()) {
      f.Add(Reason::kEventLogMalformed, log.error().message());
    } else if (quoted.count(10) == 0) {
      f.Add(Reason::kEventLogReplayMismatch, "IMA log present but PCR 10 is not quoted");
    } else {
      // The log may run ahead of the quote: accept the shortest prefix that replays exactly to
      // the quoted PCR 10 and appraise only that prefix (field case C04 #4).
      Bytes pcr10 = InitialPcrValue(10, bank);
      const Bytes& want = quoted.at(10);
      size_t matched = ConstantTimeEqual(pcr10, want) ? 0 : SIZE_MAX;
      for (size_t i = 0; i < log->events.size() && matched == SIZE_MAX; ++i) {
        const LogEvent& ev = log->events[i];
        if (ev.pcr != 10) {
          continue;
        }
        Result<Bytes> next = ExtendPcr(bank, pcr10, ev.digests.at(bank));
        if (!next.ok()) {
          break;
        }
        pcr10 = std::move(next).value();
        if (ConstantTimeEqual(pcr10, want)) {
          matched = i + 1;
        }
      }
      if (matched == SIZE_MAX) {
        f.Add(Reason::kEventLogReplayMismatch, "no prefix of the IMA log replays to PCR 10");
      } else {
        result.ima_log_checked = true;
        for (size_t i = 0; i < matched; ++i) {
          const LogEvent& ev = log->events[i];
          size_t colon = ev.file_digest.find(':');
          Result<Bytes> fd = HexDecode(ev.file_digest.substr(colon + 1));
          if (fd.ok() && !ev.violation) {
            CheckEventDigest(*fd, policy, "IMA " + ev.path, result, f);
          }
        }
      }
    }
  }
}

}  // namespace

std::string AkPolicyProblems(const TPMT_PUBLIC& pub) {
  std::string problems =
      AttributeProblems(pub.objectAttributes, kAkRequiredAttributes, kAkForbiddenAttributes);
  if (!HashAlgFromTpm(pub.nameAlg).ok()) {
    problems += (problems.empty() ? "" : ", ") + std::string("nameAlg 0x") + Hex16(pub.nameAlg) +
                " not allowed";
  }
  if (!problems.empty()) {
    return "ak_attributes: " + problems;
  }
  SigScheme scheme = SchemeOf(pub);
  if (scheme.alg == TPM2_ALG_NULL || !HashAlgFromTpm(scheme.hash).ok()) {
    return "ak_scheme: AK scheme 0x" + Hex16(scheme.alg) + "/0x" + Hex16(scheme.hash) +
           " is not a signing scheme with SHA-256/384/512";
  }
  return "";
}

std::string_view ReasonCode(Reason reason) {
  switch (reason) {
    case Reason::kCmwMalformed:
      return "cmw_malformed";
    case Reason::kEvidenceMalformed:
      return "evidence_malformed";
    case Reason::kNoncePolicy:
      return "nonce_policy";
    case Reason::kAkPublicMalformed:
      return "ak_public_malformed";
    case Reason::kAkNotTrusted:
      return "ak_not_trusted";
    case Reason::kAkAttributes:
      return "ak_attributes";
    case Reason::kAkScheme:
      return "ak_scheme";
    case Reason::kQuoteMissing:
      return "quote_missing";
    case Reason::kQuoteMalformed:
      return "quote_malformed";
    case Reason::kQuoteNotTpmGenerated:
      return "quote_not_tpm_generated";
    case Reason::kQuoteWrongType:
      return "quote_wrong_type";
    case Reason::kQuoteSignatureInvalid:
      return "quote_signature_invalid";
    case Reason::kQuoteNonceMismatch:
      return "quote_nonce_mismatch";
    case Reason::kPcrSelectionMismatch:
      return "pcr_selection_mismatch";
    case Reason::kPcrValuesMismatch:
      return "pcr_values_mismatch";
    case Reason::kPcrDigestMismatch:
      return "pcr_digest_mismatch";
    case Reason::kClockNotSafe:
      return "clock_not_safe";
    case Reason::kKeyMissing:
      return "key_missing";
    case Reason::kKeyPublicMalformed:
      return "key_public_malformed";
    case Reason::kKeyAttributes:
      return "key_attributes";
    case Reason::kCertifyMalformed:
      return "certify_malformed";
    case Reason::kCertifyNotTpmGenerated:
      return "certify_not_tpm_generated";
    case Reason::kCertifyWrongType:
      return "certify_wrong_type";
    case Reason::kCertifySignatureInvalid:
      return "certify_signature_invalid";
    case Reason::kCertifyNonceMismatch:
      return "certify_nonce_mismatch";
    case Reason::kCertifyNameMismatch:
      return "certify_name_mismatch";
    case Reason::kCertifyQualifiedNameMissing:
      return "certify_qualified_name_missing";
    case Reason::kCertifySignerMismatch:
      return "certify_signer_mismatch";
    case Reason::kBootMismatch:
      return "boot_mismatch";
    case Reason::kBankNotAllowed:
      return "bank_not_allowed";
    case Reason::kAkNotEnrolled:
      return "ak_not_enrolled";
    case Reason::kEvidenceTooOld:
      return "evidence_too_old";
    case Reason::kClockRollback:
      return "clock_rollback";
    case Reason::kPcrReferenceMismatch:
      return "pcr_reference_mismatch";
    case Reason::kEventLogMalformed:
      return "event_log_malformed";
    case Reason::kEventLogReplayMismatch:
      return "event_log_replay_mismatch";
    case Reason::kEventDenied:
      return "event_denied";
    case Reason::kEventNotAllowed:
      return "event_not_allowed";
  }
  return "unknown";
}

std::string Failure::ToString() const {
  std::string out(ReasonCode(reason));
  if (!detail.empty()) {
    out += ": " + detail;
  }
  return out;
}

bool AppraisalResult::Has(Reason reason) const {
  return std::any_of(failures.begin(), failures.end(),
                     [&](const Failure& f) { return f.reason == reason; });
}

std::string AppraisalResult::Summary() const {
  if (affirming()) {
    return "affirming";
  }
  std::string out = "contraindicated: ";
  for (size_t i = 0; i < failures.size(); ++i) {
    out += (i ? "; " : "") + failures[i].ToString();
  }
  return out;
}

AppraisalResult AppraiseEvidence(const Tpm2Evidence& e, const AppraisalOptions& options) {
  AppraisalResult result;
  Findings f;
  const AttestationPolicy* policy = options.policy;
  const PcrBankSelection want_sel = policy != nullptr ? policy->pcrs : options.expected_pcrs;
  const bool allow_sha1 = policy != nullptr ? policy->allow_sha1 : options.allow_sha1;
  if (BankDigestSize(want_sel.bank) == 0 || (want_sel.bank == TPM2_ALG_SHA1 && !allow_sha1)) {
    f.Add(Reason::kBankNotAllowed,
          "bank " + BankNameFromAlg(want_sel.bank) + " is not allowed by the policy");
  }
  if (policy != nullptr && policy->max_evidence_age_seconds > 0) {
    if (options.nonce_issued_unix <= 0 ||
        options.now_unix - options.nonce_issued_unix > policy->max_evidence_age_seconds ||
        options.now_unix < options.nonce_issued_unix) {
      f.Add(Reason::kEvidenceTooOld,
            "the nonce was issued " + std::to_string(options.now_unix - options.nonce_issued_unix) +
                " s ago, the policy allows " + std::to_string(policy->max_evidence_age_seconds));
    }
  }

  if (options.expected_nonce.size() < options.min_nonce_size) {
    f.Add(Reason::kNoncePolicy,
          "expected nonce is " + std::to_string(options.expected_nonce.size()) +
              " bytes, policy requires at least " + std::to_string(options.min_nonce_size));
  }

  // --- AK ---
  Result<PublicKeyInfo> ak = ParsePublic(e.ak_public);
  if (!ak.ok()) {
    f.Add(Reason::kAkPublicMalformed, ak.error().message());
  } else {
    std::string problems =
        AttributeProblems(ak->pub.objectAttributes, kAkRequiredAttributes, kAkForbiddenAttributes);
    if (!problems.empty()) {
      f.Add(Reason::kAkAttributes, problems);
    }
    SigScheme scheme = SchemeOf(ak->pub);
    if (scheme.alg == TPM2_ALG_NULL || !HashAlgFromTpm(scheme.hash).ok()) {
      f.Add(Reason::kAkScheme, "AK scheme 0x" + Hex16(scheme.alg) + "/0x" + Hex16(scheme.hash) +
                                   " is not a signing scheme with SHA-256/384/512");
    }
    if (!HashAlgFromTpm(ak->pub.nameAlg).ok()) {
      f.Add(Reason::kAkAttributes, "AK nameAlg 0x" + Hex16(ak->pub.nameAlg) + " not allowed");
    }
    if (options.trusted_ak_spki.has_value()) {
      Result<EvpPkeyPtr> trusted = PublicKeyFromDer(*options.trusted_ak_spki);
      if (!trusted.ok() || EVP_PKEY_eq(trusted->get(), ak->key.get()) != 1) {
        f.Add(Reason::kAkNotTrusted, "the evidence AK is not the trusted AK");
      } else {
        result.ak_enrolled = true;
      }
    }
    if (!options.trusted_ak_spki.has_value() && !options.enrolled_ak_name.has_value() &&
        !options.allow_unenrolled_ak) {
      f.Add(Reason::kAkNotTrusted,
            "no enrolled or pinned AK: the AK's attributes are only its own claim (enrol the AK "
            "or pin its public key)");
    }
    if (options.enrolled_ak_name.has_value()) {
      if (!ConstantTimeEqual(*options.enrolled_ak_name, ak->name)) {
        f.Add(Reason::kAkNotEnrolled, "the evidence AK Name " + HexEncode(ak->name) +
                                          " is not the enrolled AK Name");
        result.ak_enrolled = false;
      } else {
        result.ak_enrolled = !options.trusted_ak_spki.has_value() || result.ak_enrolled;
      }
    }
  }
  EVP_PKEY* ak_key = ak.ok() ? ak->key.get() : nullptr;

  // --- Quote ---
  const QuoteEvidence* quote = nullptr;
  std::string want_bank = BankNameFromAlg(want_sel.bank);
  for (const QuoteEvidence& q : e.quotes) {
    if (q.bank == want_bank) {
      quote = &q;
      break;
    }
  }
  ParsedAttest qa;
  if (quote == nullptr) {
    f.Add(Reason::kQuoteMissing, "no quote for bank " + want_bank);
  } else {
    qa = CheckAttest(quote->quote.attest, TPM2_ST_ATTEST_QUOTE, Reason::kQuoteMalformed,
                     Reason::kQuoteNotTpmGenerated, Reason::kQuoteWrongType, "quote", f);
    Result<HashAlg> sig_hash = Error(Layer::kPolicy, "no usable AK public key");
    if (ak_key != nullptr) {
      sig_hash =
          VerifyAttestSignature(ak->pub, ak_key, quote->quote.attest, quote->quote.signature);
    }
    if (!sig_hash.ok()) {
      f.Add(Reason::kQuoteSignatureInvalid, sig_hash.error().message());
    }
    if (qa.parsed) {
      result.quote_clock = qa.attest.clockInfo;
      CheckNonce(qa.attest.extraData, options.expected_nonce, Reason::kQuoteNonceMismatch, "quote",
                 f);
      const TPMS_QUOTE_INFO& info = qa.attest.attested.quote;
      CheckSelection(info.pcrSelect, want_sel, f);
      if (sig_hash.ok() && CheckPcrDigest(info, *quote, sig_hash.value(), f)) {
        // From here on the PCR values are authenticated (rats-tpm §3.3 Q10).
        result.quoted_pcrs = quote->pcrs;
        if (policy != nullptr) {
          bool refs_ok = true;
          for (const auto& [pcr, value] : policy->reference_values) {
            auto it = quote->pcrs.find(pcr);
            if (it == quote->pcrs.end()) {
              refs_ok = false;
              f.Add(Reason::kPcrReferenceMismatch,
                    "PCR " + std::to_string(pcr) + " has a reference value but is not quoted");
            } else if (!ConstantTimeEqual(it->second, value)) {
              refs_ok = false;
              f.Add(Reason::kPcrReferenceMismatch,
                    "PCR " + std::to_string(pcr) + " is " + HexEncode(it->second) +
                        ", reference " + HexEncode(value));
            }
          }
          result.references_checked = refs_ok && !policy->reference_values.empty();
        }
        CheckLogs(e, want_sel.bank, want_sel.mask, quote->pcrs, policy, result, f);
      } else if (e.uefi_log || e.ima_log) {
        f.Add(Reason::kEventLogReplayMismatch, "logs not replayed: the PCR values are not verified");
      }
      if (qa.attest.clockInfo.safe != TPM2_YES) {
        f.Add(Reason::kClockNotSafe, "quote clockInfo.safe is NO");
      }
      if (sig_hash.ok() && options.last_clock.has_value()) {
        CheckClock(qa.attest.clockInfo, *options.last_clock, result, f);
      }
    }
  }

  // --- Certified workload key ---
  Result<PublicKeyInfo> key = Error(Layer::kParse, "no key");
  if (e.keys.size() != 1) {
    f.Add(Reason::kKeyMissing,
          "evidence certifies " + std::to_string(e.keys.size()) + " keys, expected exactly 1");
  } else {
    const KeyEvidence& k = e.keys[0];
    key = ParsePublic(k.public_blob);
    if (!key.ok()) {
      f.Add(Reason::kKeyPublicMalformed, key.error().message());
    } else {
      std::string problems = AttributeProblems(key->pub.objectAttributes, kKeyRequiredAttributes,
                                               kKeyForbiddenAttributes);
      if (!problems.empty()) {
        f.Add(Reason::kKeyAttributes, problems);
      }
    }
    ParsedAttest ca =
        CheckAttest(k.certify.attest, TPM2_ST_ATTEST_CERTIFY, Reason::kCertifyMalformed,
                    Reason::kCertifyNotTpmGenerated, Reason::kCertifyWrongType, "certify", f);
    Result<HashAlg> sig_hash = Error(Layer::kPolicy, "no usable AK public key");
    if (ak_key != nullptr) {
      sig_hash = VerifyAttestSignature(ak->pub, ak_key, k.certify.attest, k.certify.signature);
    }
    if (!sig_hash.ok()) {
      f.Add(Reason::kCertifySignatureInvalid, sig_hash.error().message());
    }
    if (ca.parsed) {
      const TPMS_ATTEST& c = ca.attest;
      CheckNonce(c.extraData, options.expected_nonce, Reason::kCertifyNonceMismatch, "certify", f);
      const TPMS_CERTIFY_INFO& info = c.attested.certify;
      if (key.ok() &&
          !SameBytes(info.name.name, info.name.size, key->name.data(), key->name.size())) {
        f.Add(Reason::kCertifyNameMismatch,
              "certified Name is not the Name of the presented public area");
      }
      if (info.qualifiedName.size == 0) {
        f.Add(Reason::kCertifyQualifiedNameMissing, "certify qualifiedName is empty");
      }
      if (qa.parsed) {
        const TPMS_ATTEST& q = qa.attest;
        if (!SameBytes(c.qualifiedSigner.name, c.qualifiedSigner.size, q.qualifiedSigner.name,
                       q.qualifiedSigner.size)) {
          f.Add(Reason::kCertifySignerMismatch,
                "certify and quote name different qualified signers");
        }
        if (c.clockInfo.resetCount != q.clockInfo.resetCount ||
            c.clockInfo.restartCount != q.clockInfo.restartCount) {
          f.Add(Reason::kBootMismatch, "certify and quote come from different TPM boots");
        }
      }
    }
  }

  result.failures = std::move(f.failures());
  if (result.failures.empty()) {
    result.verdict = Verdict::kAffirming;
    Result<Bytes> spki = PublicKeyToDer(key->key.get());
    if (!spki.ok()) {
      result.failures.push_back(Failure{Reason::kKeyPublicMalformed, spki.error().message()});
      result.verdict = Verdict::kContraindicated;
    } else {
      result.workload_key_spki = std::move(spki).value();
      result.workload_key_name = key->name;
      result.ak_name = ak->name;
      result.ek_certified = result.ak_enrolled && options.enrolled_ek_certified;
      result.new_clock = ClockState{qa.attest.clockInfo.clock, qa.attest.clockInfo.resetCount,
                                    qa.attest.clockInfo.restartCount};
    }
  }
  if (!result.affirming()) {
    result.quoted_pcrs.clear();
    result.event_digests.clear();
    result.new_clock.reset();
  }
  return result;
}

AppraisalResult AppraiseEvidenceJson(std::string_view json, const AppraisalOptions& options) {
  Result<Tpm2Evidence> e = DecodeEvidenceJson(json);
  if (!e.ok()) {
    AppraisalResult r;
    r.failures.push_back(Failure{Reason::kEvidenceMalformed, e.error().message()});
    return r;
  }
  return AppraiseEvidence(e.value(), options);
}

AppraisalResult AppraiseCmw(std::string_view cmw_json, const AppraisalOptions& options) {
  Result<std::string> inner = UnwrapCmw(cmw_json);
  if (!inner.ok()) {
    AppraisalResult r;
    r.failures.push_back(Failure{Reason::kCmwMalformed, inner.error().message()});
    return r;
  }
  return AppraiseEvidenceJson(inner.value(), options);
}

}  // namespace wimse::attest
