// TPM object templates, as named constants citing the TCG document they come from.
#ifndef WIMSE_TPM_TEMPLATES_H_
#define WIMSE_TPM_TEMPLATES_H_

#include <tss2/tss2_tpm2_types.h>

#include "crypto/signer.h"
#include "util/result.h"

namespace wimse::tpm {

// Storage primary for parent 0x40000001: TCG "H-2" ECC NIST P-256 template from the TCG EK
// Credential Profile 2.x / draft-bottomley-tpm2-keys (also tpm2-openssl's primaryEccTemplate):
// nameAlg SHA-256; fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|noDA|restricted|
// decrypt; AES-128-CFB; scheme NULL; kdf NULL; unique.x and unique.y of ZERO size. (go-tpm-tools'
// SRKTemplateECC fills 32 zero bytes per coordinate: a different key; never use it here.)
TPM2B_PUBLIC StoragePrimaryTemplateEccP256();

// Workload signing key: fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|sign (no decrypt,
// not restricted), scheme NULL so the caller picks the hash per signature, nameAlg SHA-256.
Result<TPM2B_PUBLIC> WorkloadKeyTemplate(KeyAlg alg);

// The attribute set of a workload key (used to check keys we load and by tests).
inline constexpr TPMA_OBJECT kWorkloadKeyAttributes =
    TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
    TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_SIGN_ENCRYPT;

}  // namespace wimse::tpm

#endif  // WIMSE_TPM_TEMPLATES_H_
