#include "attest/evidence.h"

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "jose/base64url.h"
#include "tpm/attestation.h"
#include "util/file.h"

namespace wimse::attest {

namespace {
constexpr int kQuoteAttempts = 3;
// A creation record is a few hundred bytes; anything much larger is not one.
constexpr size_t kMaxKeyCreationFileSize = 16 * 1024;
}  // namespace

// ProduceEvidence with an optional creation record to certify.
Result<Tpm2Evidence> ProduceEvidenceWithCreation(tpm::TpmContext& ctx, const tpm::WorkloadKey& key,
                                                 ByteView nonce, const PcrBankSelection& pcrs,
                                                 const tpm::KeyCreation* creation) {
  if (nonce.size() < kMinNonceSize || nonce.size() > tpm::kMaxQualifyingData) {
    return Error(Layer::kUsage, "nonce must be " + std::to_string(kMinNonceSize) + ".." +
                                    std::to_string(tpm::kMaxQualifyingData) + " bytes, got " +
                                    std::to_string(nonce.size()));
  }
  if (pcrs.mask == 0 || (pcrs.mask & ~0xFFFFFFu) != 0) {
    return Error(Layer::kUsage, "PCR selection must name PCRs 0..23");
  }
  Tpm2Evidence evidence;
  evidence.nonce.assign(nonce.begin(), nonce.end());
  evidence.swname = "wimse-tpm";
  evidence.swversion = WIMSE_TPM_VERSION;
  evidence.quotes.emplace_back();
  QuoteEvidence& quote = evidence.quotes.back();
  quote.bank = BankNameFromAlg(pcrs.bank);
  KeyEvidence k;
  k.public_blob = key.key_file().public_blob;

  Status s = ctx.Run([&](ESYS_CONTEXT* esys) -> Status {
    // Load the workload key first: its load needs the SRK's slot briefly, then the AK needs
    // one more; with the cache that is at most 3 objects (libtpms' limit on a direct TCTI).
    WIMSE_ASSIGN_OR_RETURN(ESYS_TR key_tr, key.LoadLocked(esys));
    WIMSE_ASSIGN_OR_RETURN(tpm::AttestationKey ak, tpm::CreateAkLocked(esys));
    evidence.ak_public = ak.public_blob;
    bool consistent = false;
    for (int attempt = 0; attempt < kQuoteAttempts && !consistent; ++attempt) {
      WIMSE_ASSIGN_OR_RETURN(auto before, tpm::PcrReadLocked(esys, pcrs.bank, pcrs.mask));
      WIMSE_ASSIGN_OR_RETURN(tpm::TpmAttestation q,
                             tpm::QuoteLocked(esys, ak.handle.get(), nonce, pcrs.bank, pcrs.mask));
      WIMSE_ASSIGN_OR_RETURN(auto after, tpm::PcrReadLocked(esys, pcrs.bank, pcrs.mask));
      // PCRs only move forward (extend), so equal reads around the quote mean the quote saw
      // exactly these values.
      if (before == after) {
        consistent = true;
        quote.quote = SignedAttest{std::move(q.attest), std::move(q.signature)};
        quote.pcrs = std::move(after);
      }
    }
    if (!consistent) {
      return Error(Layer::kTpm, "PCRs kept changing during the quote (" +
                                    std::to_string(kQuoteAttempts) + " attempts)");
    }
    // The key's auth value (if any) authorizes TPM2_Certify's objectHandle, in the salted
    // encrypted session; the certifyInfo response is a sized buffer, encrypted too.
    WIMSE_ASSIGN_OR_RETURN(ESYS_TR key_session, key.AuthorizeLocked(esys, key_tr, true));
    Result<tpm::TpmAttestation> certified =
        tpm::CertifyLocked(esys, key_tr, ak.handle.get(), nonce, key_session);
    if (!certified.ok()) {
      if (key_session != ESYS_TR_PASSWORD) ctx.DropSecureSessionLocked(esys);
      TSS2_RC rc = certified.error().tss2_rc();
      return rc != TSS2_RC_SUCCESS ? key.AuthorizationError("TPM2_Certify", rc)
                                   : std::move(certified).error();
    }
    tpm::TpmAttestation c = std::move(certified).value();
    k.certify = SignedAttest{std::move(c.attest), std::move(c.signature)};
    if (creation != nullptr) {
      WIMSE_ASSIGN_OR_RETURN(
          tpm::TpmAttestation cc,
          tpm::CertifyCreationLocked(esys, key_tr, ak.handle.get(), nonce, *creation));
      k.creation = CreationEvidence{creation->creation_data,
                                    SignedAttest{std::move(cc.attest), std::move(cc.signature)}};
    }
    return OkStatus();  // `ak` flushes here
  });
  if (!s.ok()) {
    return std::move(s).error().WithContext("collecting TPM evidence");
  }
  evidence.keys.push_back(std::move(k));
  return evidence;
}

Result<Tpm2Evidence> ProduceEvidence(tpm::TpmContext& ctx, const tpm::WorkloadKey& key,
                                     ByteView nonce, const PcrBankSelection& pcrs) {
  const tpm::KeyCreation* creation = key.creation() ? &*key.creation() : nullptr;
  return ProduceEvidenceWithCreation(ctx, key, nonce, pcrs, creation);
}

namespace {

Result<std::optional<LogEvidence>> ReadLog(const std::string& path, const char* default_path,
                                           std::string format) {
  if (path.empty()) {
    return std::optional<LogEvidence>();
  }
  Result<Bytes> data = ReadFileBytes(path, kMaxEvidenceSize / 2);
  if (!data.ok()) {
    if (path == default_path) {
      return std::optional<LogEvidence>();
    }
    return std::move(data).error().WithContext("event log " + path);
  }
  return std::optional<LogEvidence>(LogEvidence{std::move(format), std::move(data).value()});
}

}  // namespace

Result<Tpm2Evidence> ProduceEvidence(tpm::TpmContext& ctx, const tpm::WorkloadKey& key,
                                     ByteView nonce, const EvidenceOptions& options) {
  const tpm::KeyCreation* creation = options.creation ? &*options.creation
                                     : key.creation() ? &*key.creation()
                                                      : nullptr;
  WIMSE_ASSIGN_OR_RETURN(Tpm2Evidence e,
                         ProduceEvidenceWithCreation(ctx, key, nonce, options.pcrs, creation));
  WIMSE_ASSIGN_OR_RETURN(e.uefi_log, ReadLog(options.uefi_log_path, kDefaultUefiLogPath,
                                             "tcg-pc-client-crypto-agile"));
  bool ascii = options.ima_log_path.size() >= 26 &&
               options.ima_log_path.ends_with("ascii_runtime_measurements");
  WIMSE_ASSIGN_OR_RETURN(e.ima_log, ReadLog(options.ima_log_path, kDefaultImaLogPath,
                                            ascii ? "ima-ascii" : "ima-binary"));
  return e;
}

Result<std::string> ProduceEvidenceCmw(tpm::TpmContext& ctx, const tpm::WorkloadKey& key,
                                       ByteView nonce, const PcrBankSelection& pcrs) {
  WIMSE_ASSIGN_OR_RETURN(Tpm2Evidence e, ProduceEvidence(ctx, key, nonce, pcrs));
  return WrapCmw(EncodeEvidenceJson(e));
}

Result<Bytes> ReadAkPublic(tpm::TpmContext& ctx) {
  return ctx.Run([&](ESYS_CONTEXT* esys) -> Result<Bytes> {
    WIMSE_ASSIGN_OR_RETURN(tpm::AttestationKey ak, tpm::CreateAkLocked(esys));
    return ak.public_blob;
  });
}

Result<EnrollmentRequest> ProduceEnrollmentRequest(tpm::TpmContext& ctx, tpm::EkType ek_type,
                                                   const std::string& identity) {
  EnrollmentRequest req;
  req.identity = identity;
  Status s = ctx.Run([&](ESYS_CONTEXT* esys) -> Status {
    {
      WIMSE_ASSIGN_OR_RETURN(tpm::EndorsementKey ek, tpm::CreateEkLocked(esys, ek_type));
      req.ek_public = ek.public_blob;
    }  // EK flushed
    Result<Bytes> cert = tpm::ReadNvCertificateLocked(esys, tpm::EkCertNvIndex(ek_type));
    if (cert.ok()) {
      req.ek_cert = std::move(cert).value();
    } else if (cert.error().layer() != Layer::kTpm) {
      return std::move(cert).error();
    }
    WIMSE_ASSIGN_OR_RETURN(tpm::AttestationKey ak, tpm::CreateAkLocked(esys));
    req.ak_public = ak.public_blob;
    return OkStatus();
  });
  if (!s.ok()) {
    return std::move(s).error().WithContext("collecting the enrolment request");
  }
  return req;
}

Result<SecretBytes> ActivateEnrollmentChallenge(tpm::TpmContext& ctx, tpm::EkType ek_type,
                                                const EnrollmentChallenge& challenge) {
  return ctx.Run([&](ESYS_CONTEXT* esys) -> Result<SecretBytes> {
    WIMSE_ASSIGN_OR_RETURN(tpm::AttestationKey ak, tpm::CreateAkLocked(esys));
    WIMSE_ASSIGN_OR_RETURN(tpm::EndorsementKey ek, tpm::CreateEkLocked(esys, ek_type));
    return tpm::ActivateCredentialLocked(esys, ak.handle.get(), ek, challenge.credential_blob,
                                         challenge.secret);
  });
}

std::string EncodeKeyCreation(const tpm::KeyCreation& creation, ByteView key_name) {
  nlohmann::json j{{"format", kKeyCreationFormat},
                   {"name", jose::Base64UrlEncode(key_name)},
                   {"creation_data", jose::Base64UrlEncode(creation.creation_data)},
                   {"creation_hash", jose::Base64UrlEncode(creation.creation_hash)},
                   {"creation_ticket", jose::Base64UrlEncode(creation.creation_ticket)}};
  return j.dump(2) + "\n";
}

Result<tpm::KeyCreation> DecodeKeyCreation(std::string_view json, ByteView key_name) {
  nlohmann::json j = nlohmann::json::parse(json.begin(), json.end(), nullptr,
                                           /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Error(Layer::kParse, "key creation record is not a JSON object");
  }
  auto bytes = [&](const char* name) -> Result<Bytes> {
    auto it = j.find(name);
    if (it == j.end() || !it->is_string()) {
      return Error(Layer::kParse,
                   std::string("key creation record has no string \"") + name + "\"");
    }
    Result<Bytes> b = jose::Base64UrlDecode(it->get<std::string>());
    if (!b.ok()) {
      return Error(Layer::kParse,
                   std::string("key creation record ") + name + ": " + b.error().message());
    }
    return b;
  };
  auto format = j.find("format");
  if (format == j.end() || !format->is_string() || *format != kKeyCreationFormat) {
    return Error(Layer::kParse,
                 std::string("key creation record format is not ") + kKeyCreationFormat);
  }
  WIMSE_ASSIGN_OR_RETURN(Bytes name, bytes("name"));
  if (name != Bytes(key_name.begin(), key_name.end())) {
    return Error(Layer::kUsage, "the key creation record belongs to the key " + HexEncode(name) +
                                    ", not to this key (" + HexEncode(key_name) +
                                    "): it is left from an earlier key at the same path; remove "
                                    "it to certify this key with TPM2_Certify only");
  }
  tpm::KeyCreation c;
  WIMSE_ASSIGN_OR_RETURN(c.creation_data, bytes("creation_data"));
  WIMSE_ASSIGN_OR_RETURN(c.creation_hash, bytes("creation_hash"));
  WIMSE_ASSIGN_OR_RETURN(c.creation_ticket, bytes("creation_ticket"));
  return c;
}

Status SaveKeyCreation(const std::string& key_path, const tpm::WorkloadKey& key) {
  if (!key.creation()) {
    return OkStatus();
  }
  return WriteFileAtomic(key_path + kKeyCreationSuffix,
                         EncodeKeyCreation(*key.creation(), key.name()), 0644);
}

Result<std::optional<tpm::KeyCreation>> LoadKeyCreation(const std::string& key_path,
                                                        const tpm::WorkloadKey& key) {
  const std::string path = key_path + kKeyCreationSuffix;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return std::optional<tpm::KeyCreation>();
  }
  WIMSE_ASSIGN_OR_RETURN(std::string text, ReadFileString(path, kMaxKeyCreationFileSize));
  Result<tpm::KeyCreation> c = DecodeKeyCreation(text, key.name());
  if (!c.ok()) {
    return std::move(c).error().WithContext(path);
  }
  return std::optional<tpm::KeyCreation>(std::move(c).value());
}

}  // namespace wimse::attest
