#include "tpm/ek.h"

#include <tss2/tss2_mu.h>

#include <algorithm>
#include <memory>

namespace wimse::tpm {

namespace {

struct EsysFree {
  void operator()(void* p) const { Esys_Free(p); }
};
template <typename T>
using EsysPtr = std::unique_ptr<T, EsysFree>;

// "PolicyB" for SHA-384 (TCG EK Credential Profile 2.x, high-range templates): PolicyOR of
// PolicySecret(endorsement) and the EK-auth-NV policy. Observed as the authPolicy of swtpm's
// persisted P-384 EK; tests compare our CreatePrimary output with the certificate.
constexpr char kEkPolicyBSha384Hex[] =
    "b26e7d28d11a50bc53d882bcf5fd3a1a074148bb35d3b4e4cb1c0ad9bde419ca"
    "cb47ba09699646150f9fc000f3f80e12";

void SetPolicy(TPM2B_DIGEST& d, const char* hex) {
  Bytes b = HexDecode(hex).value();
  d.size = static_cast<uint16_t>(b.size());
  std::copy(b.begin(), b.end(), d.buffer);
}

// Largest NV read per command we ask for: below every TPM's TPM_PT_NV_BUFFER_MAX (≥ 512 on
// PC Client TPMs; 1024 on swtpm).
constexpr uint16_t kNvChunk = 512;

}  // namespace

std::string_view EkTypeName(EkType type) {
  switch (type) {
    case EkType::kRsa2048:
      return "rsa2048";
    case EkType::kEccP256:
      return "ecc-p256";
    case EkType::kEccP384:
      return "ecc-p384";
  }
  return "unknown";
}

Result<EkType> EkTypeFromName(std::string_view name) {
  for (EkType t : {EkType::kRsa2048, EkType::kEccP256, EkType::kEccP384}) {
    if (name == EkTypeName(t)) {
      return t;
    }
  }
  return Error(Layer::kUsage,
               "unknown EK type \"" + std::string(name) + "\" (rsa2048, ecc-p256, ecc-p384)");
}

TPM2B_PUBLIC EkTemplate(EkType type) {
  TPM2B_PUBLIC t{};
  TPMT_PUBLIC& p = t.publicArea;
  // fixedTPM|fixedParent|sensitiveDataOrigin|adminWithPolicy|restricted|decrypt = 0x000300B2.
  p.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                       TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_ADMINWITHPOLICY |
                       TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
  switch (type) {
    case EkType::kRsa2048: {
      p.type = TPM2_ALG_RSA;
      p.nameAlg = TPM2_ALG_SHA256;
      SetPolicy(p.authPolicy, kEkPolicyASha256Hex);
      TPMS_RSA_PARMS& r = p.parameters.rsaDetail;
      r.symmetric.algorithm = TPM2_ALG_AES;
      r.symmetric.keyBits.aes = 128;
      r.symmetric.mode.aes = TPM2_ALG_CFB;
      r.scheme.scheme = TPM2_ALG_NULL;
      r.keyBits = 2048;
      r.exponent = 0;
      p.unique.rsa.size = 256;  // zeros
      break;
    }
    case EkType::kEccP256: {
      p.type = TPM2_ALG_ECC;
      p.nameAlg = TPM2_ALG_SHA256;
      SetPolicy(p.authPolicy, kEkPolicyASha256Hex);
      TPMS_ECC_PARMS& e = p.parameters.eccDetail;
      e.symmetric.algorithm = TPM2_ALG_AES;
      e.symmetric.keyBits.aes = 128;
      e.symmetric.mode.aes = TPM2_ALG_CFB;
      e.scheme.scheme = TPM2_ALG_NULL;
      e.curveID = TPM2_ECC_NIST_P256;
      e.kdf.scheme = TPM2_ALG_NULL;
      p.unique.ecc.x.size = 32;  // zeros
      p.unique.ecc.y.size = 32;
      break;
    }
    case EkType::kEccP384: {
      p.type = TPM2_ALG_ECC;
      p.nameAlg = TPM2_ALG_SHA384;
      p.objectAttributes |= TPMA_OBJECT_USERWITHAUTH;  // high range: 0x000300F2
      SetPolicy(p.authPolicy, kEkPolicyBSha384Hex);
      TPMS_ECC_PARMS& e = p.parameters.eccDetail;
      e.symmetric.algorithm = TPM2_ALG_AES;
      e.symmetric.keyBits.aes = 256;
      e.symmetric.mode.aes = TPM2_ALG_CFB;
      e.scheme.scheme = TPM2_ALG_NULL;
      e.curveID = TPM2_ECC_NIST_P384;
      e.kdf.scheme = TPM2_ALG_NULL;
      break;  // empty unique
    }
  }
  return t;
}

uint32_t EkCertNvIndex(EkType type) {
  switch (type) {
    case EkType::kRsa2048:
      return 0x01C00002;
    case EkType::kEccP256:
      return 0x01C0000A;
    case EkType::kEccP384:
      return 0x01C00016;
  }
  return 0;
}

Result<EndorsementKey> CreateEkLocked(ESYS_CONTEXT* esys, EkType type) {
  TPM2B_PUBLIC in_public = EkTemplate(type);
  WIMSE_ASSIGN_OR_RETURN(CreatedPrimary created,
                         CreateEndorsementPrimaryLocked(esys, in_public, "EK"));
  EndorsementKey ek;
  ek.type = type;
  ek.handle = std::move(created.handle);
  ek.public_blob = std::move(created.public_blob);
  return ek;
}

Result<Bytes> ReadNvCertificateLocked(ESYS_CONTEXT* esys, uint32_t nv_index) {
  ESYS_TR nv = ESYS_TR_NONE;
  TSS2_RC rc = Esys_TR_FromTPMPublic(esys, nv_index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nv);
  if (rc != TSS2_RC_SUCCESS) {
    return TpmError("TPM2_NV_ReadPublic (EK certificate index)", rc);
  }
  TpmHandle nv_handle(esys, nv, TpmHandle::Release::kClose);
  TPM2B_NV_PUBLIC* nv_public_raw = nullptr;
  TPM2B_NAME* nv_name_raw = nullptr;
  rc = Esys_NV_ReadPublic(esys, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nv_public_raw,
                          &nv_name_raw);
  EsysPtr<TPM2B_NV_PUBLIC> nv_public(nv_public_raw);
  EsysPtr<TPM2B_NAME> nv_name(nv_name_raw);
  if (rc != TSS2_RC_SUCCESS) {
    return TpmError("TPM2_NV_ReadPublic", rc);
  }
  uint16_t total = nv_public->nvPublic.dataSize;
  Bytes data;
  data.reserve(total);
  while (data.size() < total) {
    uint16_t chunk = static_cast<uint16_t>(std::min<size_t>(kNvChunk, total - data.size()));
    TPM2B_MAX_NV_BUFFER* out_raw = nullptr;
    rc = Esys_NV_Read(esys, nv, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, chunk,
                      static_cast<uint16_t>(data.size()), &out_raw);
    EsysPtr<TPM2B_MAX_NV_BUFFER> out(out_raw);
    if (rc != TSS2_RC_SUCCESS) {
      return TpmError("TPM2_NV_Read", rc);
    }
    if (!out || out->size == 0) {
      return Error(Layer::kTpm, "TPM2_NV_Read returned no data");
    }
    data.insert(data.end(), out->buffer, out->buffer + out->size);
  }
  // Outer DER SEQUENCE: 0x30, then a short or long (1-3 length octets) definite length.
  if (data.size() < 2 || data[0] != 0x30) {
    return Error(Layer::kParse, "NV index does not hold a DER certificate");
  }
  size_t len = 0;
  size_t header = 2;
  if (data[1] < 0x80) {
    len = data[1];
  } else {
    size_t n = data[1] & 0x7F;
    if (n == 0 || n > 3 || data.size() < 2 + n) {
      return Error(Layer::kParse, "NV certificate has an invalid DER length");
    }
    for (size_t i = 0; i < n; ++i) {
      len = (len << 8) | data[2 + i];
    }
    header += n;
  }
  if (header + len > data.size()) {
    return Error(Layer::kParse, "NV certificate is truncated");
  }
  data.resize(header + len);
  return data;
}

Result<SecretBytes> ActivateCredentialLocked(ESYS_CONTEXT* esys, ESYS_TR ak,
                                             const EndorsementKey& ek, ByteView credential_blob,
                                             ByteView secret) {
  TPM2B_ID_OBJECT blob{};
  size_t offset = 0;
  TSS2_RC rc = Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(credential_blob.data(), credential_blob.size(),
                                                 &offset, &blob);
  if (rc != TSS2_RC_SUCCESS || offset != credential_blob.size()) {
    return Error(Layer::kParse, "credential blob is not a TPM2B_ID_OBJECT", rc);
  }
  TPM2B_ENCRYPTED_SECRET enc{};
  offset = 0;
  rc = Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(secret.data(), secret.size(), &offset, &enc);
  if (rc != TSS2_RC_SUCCESS || offset != secret.size()) {
    return Error(Layer::kParse, "secret is not a TPM2B_ENCRYPTED_SECRET", rc);
  }
  TPM2B_PUBLIC ek_template = EkTemplate(ek.type);
  bool user_with_auth = (ek_template.publicArea.objectAttributes & TPMA_OBJECT_USERWITHAUTH) != 0;
  TpmHandle session;
  ESYS_TR ek_auth = ESYS_TR_PASSWORD;
  if (!user_with_auth) {
    TPMT_SYM_DEF sym{};
    sym.algorithm = TPM2_ALG_NULL;
    ESYS_TR s = ESYS_TR_NONE;
    rc = Esys_StartAuthSession(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                               ESYS_TR_NONE, nullptr, TPM2_SE_POLICY, &sym,
                               ek_template.publicArea.nameAlg, &s);
    if (rc != TSS2_RC_SUCCESS) {
      return TpmError("TPM2_StartAuthSession(policy)", rc);
    }
    session = TpmHandle(esys, s, TpmHandle::Release::kFlush);
    // Keep the session after ActivateCredential so the handle's flush is the one that ends it.
    rc = Esys_TRSess_SetAttributes(esys, s, TPMA_SESSION_CONTINUESESSION,
                                   TPMA_SESSION_CONTINUESESSION);
    if (rc != TSS2_RC_SUCCESS) {
      return TpmError("Esys_TRSess_SetAttributes", rc);
    }
    TPM2B_TIMEOUT* timeout_raw = nullptr;
    TPMT_TK_AUTH* ticket_raw = nullptr;
    rc = Esys_PolicySecret(esys, ESYS_TR_RH_ENDORSEMENT, s, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                           ESYS_TR_NONE, nullptr, nullptr, nullptr, 0, &timeout_raw, &ticket_raw);
    EsysPtr<TPM2B_TIMEOUT> timeout(timeout_raw);
    EsysPtr<TPMT_TK_AUTH> ticket(ticket_raw);
    if (rc != TSS2_RC_SUCCESS) {
      return TpmError("TPM2_PolicySecret(endorsement)", rc);
    }
    ek_auth = s;
  }
  // Parameter encryption of the response: the recovered credential (certInfo, the first
  // response parameter) must not cross the TPM bus in clear (CONVENTIONS rule 8). A salted HMAC
  // session (salt encrypted to the EK, which is loaded anyway; no bind) with AES-128-CFB and
  // TPMA_SESSION_ENCRYPT, in the third session slot. It authorises nothing; it is flushed by its
  // handle on every path.
  TPMT_SYM_DEF aes{};
  aes.algorithm = TPM2_ALG_AES;
  aes.keyBits.aes = 128;
  aes.mode.aes = TPM2_ALG_CFB;
  ESYS_TR enc_session_tr = ESYS_TR_NONE;
  rc = Esys_StartAuthSession(esys, ek.handle.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                             ESYS_TR_NONE, nullptr, TPM2_SE_HMAC, &aes, TPM2_ALG_SHA256,
                             &enc_session_tr);
  if (rc != TSS2_RC_SUCCESS) {
    return TpmError("TPM2_StartAuthSession(salted, for ActivateCredential)", rc);
  }
  TpmHandle enc_session(esys, enc_session_tr, TpmHandle::Release::kFlush);
  rc = Esys_TRSess_SetAttributes(esys, enc_session_tr,
                                 TPMA_SESSION_ENCRYPT | TPMA_SESSION_CONTINUESESSION, 0xFF);
  if (rc != TSS2_RC_SUCCESS) {
    return TpmError("Esys_TRSess_SetAttributes", rc);
  }
  TPM2B_DIGEST* cert_info_raw = nullptr;
  rc = Esys_ActivateCredential(esys, ak, ek.handle.get(), ESYS_TR_PASSWORD, ek_auth, enc_session_tr,
                               &blob, &enc, &cert_info_raw);
  EsysPtr<TPM2B_DIGEST> cert_info(cert_info_raw);
  if (rc != TSS2_RC_SUCCESS) {
    return TpmError("TPM2_ActivateCredential", rc);
  }
  SecretBytes out(ByteView(cert_info->buffer, cert_info->size));
  // Wipe the ESAPI copy of the credential before it is freed.
  std::fill(cert_info->buffer, cert_info->buffer + sizeof(cert_info->buffer), uint8_t{0});
  return out;
}

}  // namespace wimse::tpm
