#include "attest/evidence.h"

#include "tpm/attestation.h"
#include "util/file.h"

namespace wimse::attest {

namespace {
constexpr int kQuoteAttempts = 3;
}  // namespace

Result<Tpm2Evidence> ProduceEvidence(tpm::TpmContext& ctx, const tpm::WorkloadKey& key,
                                     ByteView nonce, const PcrBankSelection& pcrs) {
  if (nonce.empty() || nonce.size() > tpm::kMaxQualifyingData) {
    return Error(Layer::kUsage, "nonce must be 1.." + std::to_string(tpm::kMaxQualifyingData) +
                                    " bytes, got " + std::to_string(nonce.size()));
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
    WIMSE_ASSIGN_OR_RETURN(tpm::TpmAttestation c,
                           tpm::CertifyLocked(esys, key_tr, ak.handle.get(), nonce));
    k.certify = SignedAttest{std::move(c.attest), std::move(c.signature)};
    return OkStatus();  // `ak` flushes here
  });
  if (!s.ok()) {
    return std::move(s).error().WithContext("collecting TPM evidence");
  }
  evidence.keys.push_back(std::move(k));
  return evidence;
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
  WIMSE_ASSIGN_OR_RETURN(Tpm2Evidence e, ProduceEvidence(ctx, key, nonce, options.pcrs));
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

}  // namespace wimse::attest
