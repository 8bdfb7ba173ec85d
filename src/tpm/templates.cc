#include "tpm/templates.h"

namespace wimse::tpm {

TPM2B_PUBLIC StoragePrimaryTemplateEccP256() {
  TPM2B_PUBLIC t{};
  t.publicArea.type = TPM2_ALG_ECC;
  t.publicArea.nameAlg = TPM2_ALG_SHA256;
  t.publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                  TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                                  TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
  TPMS_ECC_PARMS& ecc = t.publicArea.parameters.eccDetail;
  ecc.symmetric.algorithm = TPM2_ALG_AES;
  ecc.symmetric.keyBits.aes = 128;
  ecc.symmetric.mode.aes = TPM2_ALG_CFB;
  ecc.scheme.scheme = TPM2_ALG_NULL;
  ecc.curveID = TPM2_ECC_NIST_P256;
  ecc.kdf.scheme = TPM2_ALG_NULL;
  t.publicArea.unique.ecc.x.size = 0;
  t.publicArea.unique.ecc.y.size = 0;
  return t;
}

Result<TPM2B_PUBLIC> WorkloadKeyTemplate(KeyAlg alg) {
  TPM2B_PUBLIC t{};
  t.publicArea.nameAlg = TPM2_ALG_SHA256;
  t.publicArea.objectAttributes = kWorkloadKeyAttributes;
  switch (alg) {
    case KeyAlg::kEcP256:
    case KeyAlg::kEcP384: {
      t.publicArea.type = TPM2_ALG_ECC;
      TPMS_ECC_PARMS& ecc = t.publicArea.parameters.eccDetail;
      ecc.symmetric.algorithm = TPM2_ALG_NULL;
      ecc.scheme.scheme = TPM2_ALG_NULL;
      ecc.curveID = alg == KeyAlg::kEcP256 ? TPM2_ECC_NIST_P256 : TPM2_ECC_NIST_P384;
      ecc.kdf.scheme = TPM2_ALG_NULL;
      break;
    }
    case KeyAlg::kRsa2048:
    case KeyAlg::kRsa3072: {
      t.publicArea.type = TPM2_ALG_RSA;
      TPMS_RSA_PARMS& rsa = t.publicArea.parameters.rsaDetail;
      rsa.symmetric.algorithm = TPM2_ALG_NULL;
      rsa.scheme.scheme = TPM2_ALG_NULL;
      rsa.keyBits = alg == KeyAlg::kRsa2048 ? 2048 : 3072;
      rsa.exponent = 0;  // 65537
      break;
    }
  }
  return t;
}

}  // namespace wimse::tpm
