#include "tpm/workload_key.h"

#include <tss2/tss2_mu.h>

#include "crypto/ecdsa.h"
#include "crypto/public_key.h"
#include "crypto/tpm_public.h"
#include "tpm/templates.h"

namespace wimse::tpm {

namespace {

bool IsObjectMemoryError(TSS2_RC rc) {
  // TPM_RC_OBJECT_MEMORY (0x902) is a warning code; no parameter/handle bits are attached.
  return rc == TPM2_RC_OBJECT_MEMORY;
}

Result<TPM2B_PRIVATE> UnmarshalPrivate(ByteView blob) {
  TPM2B_PRIVATE priv{};
  size_t offset = 0;
  TSS2_RC rc = Tss2_MU_TPM2B_PRIVATE_Unmarshal(blob.data(), blob.size(), &offset, &priv);
  if (rc != TSS2_RC_SUCCESS || offset != blob.size()) {
    return Error(Layer::kParse, "malformed TPM2B_PRIVATE in key file", rc);
  }
  return priv;
}

Result<Bytes> MarshalPrivate(const TPM2B_PRIVATE& priv) {
  Bytes out(sizeof(TPM2B_PRIVATE) + 2);
  size_t offset = 0;
  TSS2_RC rc = Tss2_MU_TPM2B_PRIVATE_Marshal(&priv, out.data(), out.size(), &offset);
  if (rc != TSS2_RC_SUCCESS) return Error(Layer::kInternal, "marshal TPM2B_PRIVATE", rc);
  out.resize(offset);
  return out;
}

}  // namespace

Result<std::shared_ptr<WorkloadKey>> WorkloadKey::FromKeyFile(std::shared_ptr<TpmContext> ctx,
                                                              Tss2KeyFile file) {
  WIMSE_ASSIGN_OR_RETURN(TPM2B_PUBLIC pub, UnmarshalTpm2bPublic(file.public_blob));
  WIMSE_RETURN_IF_ERROR(UnmarshalPrivate(file.private_blob));
  const TPMT_PUBLIC& area = pub.publicArea;
  if ((area.objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT) == 0) {
    return Error(Layer::kPolicy, "the key is not a signing key (sign attribute clear)");
  }
  if ((area.objectAttributes & TPMA_OBJECT_RESTRICTED) != 0) {
    return Error(Layer::kPolicy,
                 "the key is restricted (an attestation key); it cannot sign arbitrary digests");
  }
  if (file.parent != kOwnerHierarchyParent || file.rsa_parent) {
    // Persistent parents come with issue 3 (handle: URIs); refuse rather than misuse.
    char buf[16];
    std::snprintf(buf, sizeof(buf), "0x%08x", file.parent);
    return Error(Layer::kPolicy, std::string("unsupported parent ") + buf +
                                     " (only the ECC storage primary of 0x40000001)");
  }
  if (!file.empty_auth) {
    // Keys with an auth value need a salted HMAC session (issue 3). tpm2_encodeobject 5.4
    // writes emptyAuth FALSE for password-less keys; we try them with empty auth exactly once.
  }
  auto key = std::shared_ptr<WorkloadKey>(new WorkloadKey());
  key->ctx_ = std::move(ctx);
  key->public_area_ = area;
  WIMSE_ASSIGN_OR_RETURN(key->alg_, KeyAlgOfTpmPublic(area));
  WIMSE_ASSIGN_OR_RETURN(key->public_key_, PublicKeyFromTpmPublic(area));
  WIMSE_ASSIGN_OR_RETURN(key->name_, TpmName(area));
  key->file_ = std::move(file);
  return key;
}

Result<std::shared_ptr<WorkloadKey>> WorkloadKey::Open(std::shared_ptr<TpmContext> ctx,
                                                       const std::string& path) {
  WIMSE_ASSIGN_OR_RETURN(Tss2KeyFile file, ReadTss2KeyFile(path));
  auto key = FromKeyFile(std::move(ctx), std::move(file));
  if (!key.ok()) return key.error().WithContext(path);
  return key;
}

Result<std::shared_ptr<WorkloadKey>> WorkloadKey::Create(std::shared_ptr<TpmContext> ctx,
                                                         KeyAlg alg) {
  WIMSE_ASSIGN_OR_RETURN(TPM2B_PUBLIC in_public, WorkloadKeyTemplate(alg));
  auto created = ctx->Run([&](ESYS_CONTEXT* esys) -> Result<Tss2KeyFile> {
    WIMSE_ASSIGN_OR_RETURN(TpmHandle srk, ctx->LoadStoragePrimaryLocked(esys));
    TPM2B_SENSITIVE_CREATE sensitive{};
    TPM2B_DATA outside{};
    TPML_PCR_SELECTION pcrs{};
    TPM2B_PRIVATE* out_private = nullptr;
    TPM2B_PUBLIC* out_public = nullptr;
    TSS2_RC rc = Esys_Create(esys, srk.get(), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                             &sensitive, &in_public, &outside, &pcrs, &out_private, &out_public,
                             nullptr, nullptr, nullptr);
    if (rc != TSS2_RC_SUCCESS) return TpmError("TPM2_Create (workload key)", rc);
    std::unique_ptr<TPM2B_PRIVATE, void (*)(void*)> priv_owner(out_private, Esys_Free);
    std::unique_ptr<TPM2B_PUBLIC, void (*)(void*)> pub_owner(out_public, Esys_Free);
    Tss2KeyFile file;
    file.empty_auth = true;
    file.parent = kOwnerHierarchyParent;
    WIMSE_ASSIGN_OR_RETURN(file.public_blob, MarshalTpm2bPublic(*out_public));
    WIMSE_ASSIGN_OR_RETURN(file.private_blob, MarshalPrivate(*out_private));
    return file;
  });
  if (!created.ok()) return std::move(created).error();
  return FromKeyFile(std::move(ctx), std::move(created).value());
}

Result<ESYS_TR> WorkloadKey::LoadLocked(ESYS_CONTEXT* esys) const {
  return ctx_->CachedObjectLocked(
      esys, file_.public_blob, [&](ESYS_CONTEXT* e) -> Result<ESYS_TR> {
        WIMSE_ASSIGN_OR_RETURN(TPM2B_PUBLIC pub, UnmarshalTpm2bPublic(file_.public_blob));
        WIMSE_ASSIGN_OR_RETURN(TPM2B_PRIVATE priv, UnmarshalPrivate(file_.private_blob));
        WIMSE_ASSIGN_OR_RETURN(TpmHandle srk, ctx_->LoadStoragePrimaryLocked(e));
        ESYS_TR tr = ESYS_TR_NONE;
        TSS2_RC rc = Esys_Load(e, srk.get(), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &priv,
                               &pub, &tr);
        if (IsObjectMemoryError(rc)) {
          return TpmError("TPM2_Load: no free object slot in the TPM", rc);
        }
        if ((rc & 0xff) == (TPM2_RC_INTEGRITY & 0xff) || (rc & 0xbf) == 0x9f) {
          // TPM_RC_INTEGRITY on the private blob: the key was wrapped by another TPM/parent.
          return TpmError("TPM2_Load: the key file does not belong to this TPM's storage primary",
                          rc);
        }
        if (rc != TSS2_RC_SUCCESS) return TpmError("TPM2_Load (workload key)", rc);
        if (!file_.empty_auth) {
          // Auth values arrive with issue 3 (salted HMAC session). An emptyAuth FALSE file
          // from tpm2_encodeobject 5.4 (inverted flag) is still usable with empty auth.
        }
        return tr;
      });
}

Result<Bytes> WorkloadKey::SignDigest(HashAlg hash, ByteView digest) const {
  if (digest.size() != HashSize(hash)) {
    return Error(Layer::kUsage, "digest is " + std::to_string(digest.size()) +
                                    " bytes; " + HashName(hash) + " needs " +
                                    std::to_string(HashSize(hash)));
  }
  TPM2B_DIGEST in{};
  in.size = static_cast<UINT16>(digest.size());
  std::copy(digest.begin(), digest.end(), in.buffer);
  TPMT_SIG_SCHEME scheme{};
  if (public_area_.type == TPM2_ALG_ECC) {
    scheme.scheme = TPM2_ALG_ECDSA;
    scheme.details.ecdsa.hashAlg = TpmAlgFromHash(hash);
  } else {
    scheme.scheme = TPM2_ALG_RSASSA;
    scheme.details.rsassa.hashAlg = TpmAlgFromHash(hash);
  }
  TPMT_TK_HASHCHECK validation{};
  validation.tag = TPM2_ST_HASHCHECK;
  validation.hierarchy = TPM2_RH_NULL;
  validation.digest.size = 0;
  return ctx_->Run([&](ESYS_CONTEXT* esys) -> Result<Bytes> {
    TPMT_SIGNATURE* sig = nullptr;
    TSS2_RC rc = TSS2_RC_SUCCESS;
    for (int attempt = 0; attempt < 2; ++attempt) {
      WIMSE_ASSIGN_OR_RETURN(ESYS_TR key, LoadLocked(esys));
      rc = Esys_Sign(esys, key, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &in, &scheme,
                     &validation, &sig);
      // A stale cached handle (TPM restarted or object flushed by someone else): reload once.
      if ((rc & 0xfff) == (TPM2_RC_REFERENCE_H0 & 0xfff) || (rc & 0xfff) == TPM2_RC_HANDLE) {
        ctx_->FlushCacheLocked(esys);
        continue;
      }
      break;
    }
    if (rc != TSS2_RC_SUCCESS) return TpmError("TPM2_Sign", rc);
    std::unique_ptr<TPMT_SIGNATURE, void (*)(void*)> owner(sig, Esys_Free);
    if (sig->sigAlg == TPM2_ALG_ECDSA) {
      const TPMS_SIGNATURE_ECC& ecc = sig->signature.ecdsa;
      return EcdsaRsToRaw(ByteView(ecc.signatureR.buffer, ecc.signatureR.size),
                          ByteView(ecc.signatureS.buffer, ecc.signatureS.size),
                          CurveFieldSize(alg_));
    }
    if (sig->sigAlg == TPM2_ALG_RSASSA) {
      const TPM2B_PUBLIC_KEY_RSA& s = sig->signature.rsassa.sig;
      return Bytes(s.buffer, s.buffer + s.size);
    }
    return Error(Layer::kTpm, "TPM2_Sign returned an unexpected signature algorithm");
  });
}

Result<std::unique_ptr<TpmSigner>> OpenTpmSigner(const std::string& tcti,
                                                 const std::string& key_path) {
  WIMSE_ASSIGN_OR_RETURN(auto key, WorkloadKey::Open(SharedContext(ResolveTcti(tcti)), key_path));
  return std::make_unique<TpmSigner>(std::move(key));
}

}  // namespace wimse::tpm
