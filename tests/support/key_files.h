// Test-only TSS2 key files the library itself never makes, created in the TPM of the suite.
#ifndef WIMSE_TESTS_SUPPORT_KEY_FILES_H_
#define WIMSE_TESTS_SUPPORT_KEY_FILES_H_

#include <gtest/gtest.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>

#include <memory>

#include "crypto/tpm_public.h"
#include "keyfile/tss2_key.h"
#include "tpm/context.h"
#include "tpm/templates.h"
#include "util/result.h"

namespace wimse::testing {

// Within TpmContext::Run: TPM2_Create of `tmpl` with an empty auth value under the loaded
// `parent` (whose auth value, if any, the caller set on its ESYS_TR), returned as a key file
// naming `parent_handle`, with an explicit emptyAuth TRUE. Leaves nothing loaded.
inline Result<Tss2KeyFile> CreateKeyFileLocked(ESYS_CONTEXT* esys, ESYS_TR parent,
                                               const TPM2B_PUBLIC& tmpl, uint32_t parent_handle) {
  TPM2B_SENSITIVE_CREATE sensitive{};
  TPM2B_DATA outside{};
  TPML_PCR_SELECTION pcrs{};
  TPM2B_PRIVATE* priv = nullptr;
  TPM2B_PUBLIC* pub = nullptr;
  TSS2_RC rc = Esys_Create(esys, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive,
                           &tmpl, &outside, &pcrs, &priv, &pub, nullptr, nullptr, nullptr);
  if (rc != TSS2_RC_SUCCESS) return tpm::TpmError("TPM2_Create (test key)", rc);
  std::unique_ptr<TPM2B_PRIVATE, void (*)(void*)> priv_owner(priv, Esys_Free);
  std::unique_ptr<TPM2B_PUBLIC, void (*)(void*)> pub_owner(pub, Esys_Free);
  Tss2KeyFile file;
  WIMSE_ASSIGN_OR_RETURN(file.public_blob, MarshalTpm2bPublic(*pub));
  file.private_blob.resize(sizeof(TPM2B_PRIVATE));
  size_t offset = 0;
  if (Tss2_MU_TPM2B_PRIVATE_Marshal(priv, file.private_blob.data(), file.private_blob.size(),
                                    &offset) != TSS2_RC_SUCCESS) {
    return Error(Layer::kInternal, "marshal TPM2B_PRIVATE");
  }
  file.private_blob.resize(offset);
  file.empty_auth = true;
  file.empty_auth_present = true;
  file.parent = parent_handle;
  return file;
}

// A P-256 signing key like ours but with userWithAuth clear and an empty authPolicy (TPM2_Create
// under the SRK of 0x40000001, emptyAuth TRUE): the TPM makes it, but only a policy session
// could authorize its use, so TPM2_Sign with a password or HMAC session fails with
// TPM_RC_AUTH_UNAVAILABLE (0x12f). Leaves nothing loaded. Empty blobs (and a test failure)
// when the TPM refuses.
inline Tss2KeyFile PolicyOnlyKeyFile(tpm::TpmContext& ctx) {
  auto made = ctx.Run([&](ESYS_CONTEXT* esys) -> Result<Tss2KeyFile> {
    WIMSE_ASSIGN_OR_RETURN(TPM2B_PUBLIC in_public, tpm::WorkloadKeyTemplate(KeyAlg::kEcP256));
    in_public.publicArea.objectAttributes &= ~TPMA_OBJECT_USERWITHAUTH;
    WIMSE_ASSIGN_OR_RETURN(tpm::TpmHandle srk, ctx.LoadStoragePrimaryLocked(esys));
    return CreateKeyFileLocked(esys, srk.get(), in_public, kOwnerHierarchyParent);
  });
  EXPECT_TRUE(made.ok()) << made.error().ToString();
  return made.ok() ? *made : Tss2KeyFile{};
}

}  // namespace wimse::testing

#endif  // WIMSE_TESTS_SUPPORT_KEY_FILES_H_
