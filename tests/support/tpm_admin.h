// Test-only TPM administration helpers shared by the swtpm-backed suites: read a TPM property
// (dictionary-attack counters, lockout parameters) and reset the dictionary-attack lockout with
// swtpm's empty lockout auth. Both run inside TpmContext::Run (one TPM command each).
#ifndef WIMSE_TESTS_SUPPORT_TPM_ADMIN_H_
#define WIMSE_TESTS_SUPPORT_TPM_ADMIN_H_

#include <tss2/tss2_esys.h>

#include <cstdint>

#include "tpm/context.h"
#include "util/result.h"

namespace wimse::testing {

// TPM2_GetCapability(TPM_PROPERTIES, `prop`): the value, or 0xffffffff on error.
inline uint32_t TpmProperty(tpm::TpmContext& ctx, TPM2_PT prop) {
  auto v = ctx.Run([&](ESYS_CONTEXT* esys) -> Result<uint32_t> {
    TPMS_CAPABILITY_DATA* caps = nullptr;
    TSS2_RC rc = Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                    TPM2_CAP_TPM_PROPERTIES, prop, 1, nullptr, &caps);
    if (rc != TSS2_RC_SUCCESS) return tpm::TpmError("GetCapability", rc);
    uint32_t out = caps->data.tpmProperties.tpmProperty[0].value;
    Esys_Free(caps);
    return out;
  });
  return v.ok() ? *v : 0xffffffffu;
}

// The TPM's dictionary-attack failure counter.
inline uint32_t LockoutCounter(tpm::TpmContext& ctx) {
  return TpmProperty(ctx, TPM2_PT_LOCKOUT_COUNTER);
}

// TPM2_DictionaryAttackLockReset with the (empty) lockout auth of a fresh swtpm.
inline Status ResetDictionaryAttack(tpm::TpmContext& ctx) {
  return ctx.Run([&](ESYS_CONTEXT* esys) -> Status {
    TSS2_RC rc = Esys_DictionaryAttackLockReset(esys, ESYS_TR_RH_LOCKOUT, ESYS_TR_PASSWORD,
                                                ESYS_TR_NONE, ESYS_TR_NONE);
    if (rc != TSS2_RC_SUCCESS) return tpm::TpmError("DictionaryAttackLockReset", rc);
    return OkStatus();
  });
}

}  // namespace wimse::testing

#endif  // WIMSE_TESTS_SUPPORT_TPM_ADMIN_H_
