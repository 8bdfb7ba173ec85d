#include "crypto/tpm_public.h"

#include <openssl/err.h>
#include <openssl/rsa.h>
#include <tss2/tss2_mu.h>

#include "crypto/public_key.h"

namespace wimse {

namespace {
Error MuError(const char* what, TSS2_RC rc) {
  return Error(Layer::kParse, std::string("malformed ") + what, rc);
}
}  // namespace

Result<TPM2B_PUBLIC> UnmarshalTpm2bPublic(ByteView blob) {
  if (blob.size() < 2) return Error(Layer::kParse, "TPM2B_PUBLIC shorter than its size field");
  size_t declared = (static_cast<size_t>(blob[0]) << 8) | blob[1];
  if (declared + 2 != blob.size()) {
    return Error(Layer::kParse, "TPM2B_PUBLIC size field " + std::to_string(declared) +
                                    " does not match the " + std::to_string(blob.size() - 2) +
                                    " bytes present");
  }
  TPM2B_PUBLIC pub{};
  size_t offset = 0;
  TSS2_RC rc = Tss2_MU_TPM2B_PUBLIC_Unmarshal(blob.data(), blob.size(), &offset, &pub);
  if (rc != TSS2_RC_SUCCESS) return MuError("TPM2B_PUBLIC", rc);
  if (offset != blob.size()) {
    return Error(Layer::kParse, "trailing bytes inside TPM2B_PUBLIC");
  }
  return pub;
}

Result<Bytes> MarshalTpmtPublic(const TPMT_PUBLIC& pub) {
  Bytes out(sizeof(TPMT_PUBLIC));
  size_t offset = 0;
  TSS2_RC rc = Tss2_MU_TPMT_PUBLIC_Marshal(&pub, out.data(), out.size(), &offset);
  if (rc != TSS2_RC_SUCCESS) return MuError("TPMT_PUBLIC", rc);
  out.resize(offset);
  return out;
}

Result<Bytes> MarshalTpm2bPublic(const TPM2B_PUBLIC& pub) {
  Bytes out(sizeof(TPM2B_PUBLIC) + 2);
  size_t offset = 0;
  TPM2B_PUBLIC copy = pub;
  copy.size = 0;  // let the marshaller compute the size
  TSS2_RC rc = Tss2_MU_TPM2B_PUBLIC_Marshal(&copy, out.data(), out.size(), &offset);
  if (rc != TSS2_RC_SUCCESS) return MuError("TPM2B_PUBLIC", rc);
  out.resize(offset);
  return out;
}

Result<HashAlg> HashAlgFromTpm(TPM2_ALG_ID alg) {
  switch (alg) {
    case TPM2_ALG_SHA256:
      return HashAlg::kSha256;
    case TPM2_ALG_SHA384:
      return HashAlg::kSha384;
    case TPM2_ALG_SHA512:
      return HashAlg::kSha512;
    default:
      return Error(Layer::kPolicy,
                   "unsupported TPM hash algorithm 0x" +
                       HexEncode(Bytes{static_cast<uint8_t>(alg >> 8), static_cast<uint8_t>(alg)}));
  }
}

TPM2_ALG_ID TpmAlgFromHash(HashAlg alg) {
  switch (alg) {
    case HashAlg::kSha256:
      return TPM2_ALG_SHA256;
    case HashAlg::kSha384:
      return TPM2_ALG_SHA384;
    case HashAlg::kSha512:
      return TPM2_ALG_SHA512;
  }
  return TPM2_ALG_NULL;
}

Result<KeyAlg> KeyAlgOfTpmPublic(const TPMT_PUBLIC& pub) {
  if (pub.type == TPM2_ALG_ECC) {
    switch (pub.parameters.eccDetail.curveID) {
      case TPM2_ECC_NIST_P256:
        return KeyAlg::kEcP256;
      case TPM2_ECC_NIST_P384:
        return KeyAlg::kEcP384;
      default:
        return Error(Layer::kPolicy,
                     "unsupported ECC curve " + std::to_string(pub.parameters.eccDetail.curveID));
    }
  }
  if (pub.type == TPM2_ALG_RSA) {
    switch (pub.parameters.rsaDetail.keyBits) {
      case 2048:
        return KeyAlg::kRsa2048;
      case 3072:
        return KeyAlg::kRsa3072;
      default:
        return Error(Layer::kPolicy, "unsupported RSA key size " +
                                         std::to_string(pub.parameters.rsaDetail.keyBits));
    }
  }
  return Error(Layer::kPolicy, "unsupported TPM key type " + std::to_string(pub.type));
}

Result<EvpPkeyPtr> PublicKeyFromTpmPublic(const TPMT_PUBLIC& pub) {
  WIMSE_ASSIGN_OR_RETURN(KeyAlg alg, KeyAlgOfTpmPublic(pub));
  if (pub.type == TPM2_ALG_ECC) {
    const TPMS_ECC_POINT& p = pub.unique.ecc;
    if (p.x.size > sizeof(p.x.buffer) || p.y.size > sizeof(p.y.buffer)) {
      return Error(Layer::kParse, "ECC point coordinate size out of range");
    }
    return EcPublicKeyFromXY(alg, ByteView(p.x.buffer, p.x.size), ByteView(p.y.buffer, p.y.size));
  }
  const TPM2B_PUBLIC_KEY_RSA& n = pub.unique.rsa;
  if (n.size > sizeof(n.buffer) || n.size * 8u != pub.parameters.rsaDetail.keyBits) {
    return Error(Layer::kParse, "RSA modulus size does not match keyBits");
  }
  uint32_t e = pub.parameters.rsaDetail.exponent == 0 ? 65537 : pub.parameters.rsaDetail.exponent;
  return RsaPublicKeyFromNE(ByteView(n.buffer, n.size), e);
}

Result<Bytes> TpmName(const TPMT_PUBLIC& pub) {
  const char* md = nullptr;
  switch (pub.nameAlg) {
    case TPM2_ALG_SHA1:
      md = "SHA1";
      break;
    case TPM2_ALG_SHA256:
      md = "SHA256";
      break;
    case TPM2_ALG_SHA384:
      md = "SHA384";
      break;
    case TPM2_ALG_SHA512:
      md = "SHA512";
      break;
    default:
      return Error(Layer::kPolicy, "unsupported nameAlg " + std::to_string(pub.nameAlg));
  }
  WIMSE_ASSIGN_OR_RETURN(Bytes marshalled, MarshalTpmtPublic(pub));
  EvpMdPtr evp_md(EVP_MD_fetch(nullptr, md, "provider=default"));
  if (!evp_md) return OpenSslError("EVP_MD_fetch");
  Bytes out(2 + static_cast<size_t>(EVP_MD_get_size(evp_md.get())));
  out[0] = static_cast<uint8_t>(pub.nameAlg >> 8);
  out[1] = static_cast<uint8_t>(pub.nameAlg);
  unsigned int len = 0;
  if (EVP_Digest(marshalled.data(), marshalled.size(), out.data() + 2, &len, evp_md.get(),
                 nullptr) != 1) {
    return OpenSslError("EVP_Digest");
  }
  return out;
}

namespace {

// 1: verifies, 0: does not, -1: setup failed.
int VerifyPss(EVP_PKEY* key, HashAlg hash, ByteView digest, ByteView sig, int saltlen) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
  if (!ctx || EVP_PKEY_verify_init(ctx.get()) <= 0 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING) <= 0 ||
      EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_get_digestbyname(HashName(hash))) <= 0 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), EVP_get_digestbyname(HashName(hash))) <= 0 ||
      EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), saltlen) <= 0) {
    ERR_clear_error();
    return -1;
  }
  int rc = EVP_PKEY_verify(ctx.get(), sig.data(), sig.size(), digest.data(), digest.size());
  ERR_clear_error();
  return rc == 1 ? 1 : 0;
}

}  // namespace

Status CheckRsaPssSaltIsDigestLength(EVP_PKEY* public_key, HashAlg hash, ByteView digest,
                                     ByteView sig) {
  int exact = VerifyPss(public_key, hash, digest, sig, RSA_PSS_SALTLEN_DIGEST);
  if (exact == 1) return OkStatus();
  if (exact < 0) return Error(Layer::kOpenSsl, "cannot set up RSA-PSS verification");
  if (VerifyPss(public_key, hash, digest, sig, RSA_PSS_SALTLEN_AUTO) == 1) {
    return Error(Layer::kTpm,
                 std::string("the TPM produced an RSA-PSS signature whose salt length is not the "
                             "digest length (") +
                     std::to_string(HashSize(hash)) +
                     " bytes); TLS 1.3 peers reject it, so it is not returned");
  }
  return Error(Layer::kTpm,
               "the TPM's RSA-PSS signature does not verify with the key's public part");
}

}  // namespace wimse
