#include "attest/credential.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include <cstring>

#include "crypto/kdf.h"
#include "crypto/ossl.h"
#include "crypto/public_key.h"
#include "crypto/tpm_public.h"

namespace wimse::attest {

namespace {

void PutU16(Bytes& out, size_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}
void Append(Bytes& out, ByteView b) { out.insert(out.end(), b.begin(), b.end()); }
void AppendTpm2b(Bytes& out, ByteView b) {
  PutU16(out, b.size());
  Append(out, b);
}

const char* HashNameOfTpmAlg(uint16_t alg) {
  switch (alg) {
    case TPM2_ALG_SHA256:
      return "SHA256";
    case TPM2_ALG_SHA384:
      return "SHA384";
    case TPM2_ALG_SHA512:
      return "SHA512";
    default:
      return nullptr;
  }
}

// AES-CFB with a zero IV (Part 1 §24, credential protection: the symmetric key is used once).
Result<Bytes> AesCfbEncrypt(ByteView key, ByteView plain) {
  static const uint8_t kZeroIv[16] = {0};
  Bytes out(plain.size());
  WIMSE_RETURN_IF_ERROR(crypto::AesCfb(/*encrypt=*/true, key, kZeroIv, plain, out));
  return out;
}

Result<Bytes> RsaOaepIdentity(EVP_PKEY* ek, const char* hash, ByteView seed) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, ek, nullptr));
  if (!ctx || EVP_PKEY_encrypt_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) != 1 ||
      EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx.get(), hash, nullptr) != 1 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx.get(), hash, nullptr) != 1) {
    return OpenSslError("RSA-OAEP setup");
  }
  static const char kLabel[] = "IDENTITY";  // sizeof includes the terminating zero
  void* label = OPENSSL_memdup(kLabel, sizeof(kLabel));
  if (label == nullptr ||
      EVP_PKEY_CTX_set0_rsa_oaep_label(ctx.get(), label, static_cast<int>(sizeof(kLabel))) != 1) {
    OPENSSL_free(label);
    return OpenSslError("RSA-OAEP label");
  }
  size_t out_len = 0;
  if (EVP_PKEY_encrypt(ctx.get(), nullptr, &out_len, seed.data(), seed.size()) != 1) {
    return OpenSslError("RSA-OAEP");
  }
  Bytes out(out_len);
  if (EVP_PKEY_encrypt(ctx.get(), out.data(), &out_len, seed.data(), seed.size()) != 1) {
    return OpenSslError("RSA-OAEP");
  }
  out.resize(out_len);
  return out;
}

}  // namespace

Result<MadeCredential> MakeCredential(ByteView ek_public, ByteView ak_name, ByteView credential) {
  if (credential.empty() || credential.size() > 32) {
    return Error(Layer::kUsage, "credential must be 1..32 bytes");
  }
  if (ak_name.size() < 2 + 32 || ak_name.size() > 2 + 64) {
    return Error(Layer::kUsage, "AK Name has an invalid size");
  }
  Result<TPM2B_PUBLIC> parsed = UnmarshalTpm2bPublic(ek_public);
  if (!parsed.ok()) {
    return Error(Layer::kParse, "EK public: " + parsed.error().message());
  }
  const TPMT_PUBLIC& ek = parsed->publicArea;
  const char* hash = HashNameOfTpmAlg(ek.nameAlg);
  if (hash == nullptr) {
    return Error(Layer::kParse, "EK nameAlg is not SHA-256/384/512");
  }
  uint32_t need = TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
  if ((ek.objectAttributes & need) != need || (ek.objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT)) {
    return Error(Layer::kParse, "EK is not a restricted decryption key");
  }
  const TPMT_SYM_DEF_OBJECT& sym = ek.type == TPM2_ALG_RSA ? ek.parameters.rsaDetail.symmetric
                                                           : ek.parameters.eccDetail.symmetric;
  if ((ek.type != TPM2_ALG_RSA && ek.type != TPM2_ALG_ECC) || sym.algorithm != TPM2_ALG_AES ||
      sym.mode.aes != TPM2_ALG_CFB) {
    return Error(Layer::kParse, "EK is not RSA/ECC with AES-CFB protection");
  }
  size_t sym_bits = sym.keyBits.aes;
  WIMSE_ASSIGN_OR_RETURN(EvpPkeyPtr ek_key, PublicKeyFromTpmPublic(ek));
  size_t digest_size = static_cast<size_t>(EVP_MD_get_size(crypto::PrefetchedDigest(hash)));

  Bytes seed;
  MadeCredential out;
  if (ek.type == TPM2_ALG_RSA) {
    seed.resize(digest_size);
    if (RAND_bytes(seed.data(), static_cast<int>(seed.size())) != 1) {
      return OpenSslError("RAND_bytes");
    }
    WIMSE_ASSIGN_OR_RETURN(Bytes enc, RsaOaepIdentity(ek_key.get(), hash, seed));
    AppendTpm2b(out.secret, enc);
  } else {
    WIMSE_ASSIGN_OR_RETURN(KeyAlg alg, KeyAlgOfTpmPublic(ek));
    EvpPkeyPtr eph(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", CurveGroupName(alg)));
    if (!eph) {
      return OpenSslError("ephemeral EC key");
    }
    EvpPkeyCtxPtr dctx(EVP_PKEY_CTX_new_from_pkey(nullptr, eph.get(), nullptr));
    size_t z_len = 0;
    if (!dctx || EVP_PKEY_derive_init(dctx.get()) != 1 ||
        EVP_PKEY_derive_set_peer(dctx.get(), ek_key.get()) != 1 ||
        EVP_PKEY_derive(dctx.get(), nullptr, &z_len) != 1) {
      return OpenSslError("ECDH");
    }
    Bytes z(z_len);
    if (EVP_PKEY_derive(dctx.get(), z.data(), &z_len) != 1) {
      return OpenSslError("ECDH");
    }
    z.resize(z_len);
    WIMSE_ASSIGN_OR_RETURN(Bytes point, EcPublicPoint(eph.get()));  // 04 || X || Y
    size_t field = CurveFieldSize(alg);
    if (point.size() != 1 + 2 * field) {
      return Error(Layer::kInternal, "unexpected EC point size");
    }
    ByteView ex(point.data() + 1, field);
    ByteView ey(point.data() + 1 + field, field);
    ByteView ek_x(ek.unique.ecc.x.buffer, ek.unique.ecc.x.size);
    WIMSE_ASSIGN_OR_RETURN(seed, crypto::KdfE(hash, z, "IDENTITY", ex, ek_x, digest_size * 8));
    std::fill(z.begin(), z.end(), uint8_t{0});
    Bytes ecc_point;
    AppendTpm2b(ecc_point, ex);
    AppendTpm2b(ecc_point, ey);
    AppendTpm2b(out.secret, ecc_point);
  }

  WIMSE_ASSIGN_OR_RETURN(Bytes sym_key, crypto::KdfA(hash, seed, "STORAGE", ak_name, {}, sym_bits));
  Bytes plain;
  AppendTpm2b(plain, credential);
  WIMSE_ASSIGN_OR_RETURN(Bytes enc_identity, AesCfbEncrypt(sym_key, plain));
  WIMSE_ASSIGN_OR_RETURN(Bytes hmac_key,
                         crypto::KdfA(hash, seed, "INTEGRITY", {}, {}, digest_size * 8));
  Bytes mac_input = enc_identity;
  Append(mac_input, ak_name);
  WIMSE_ASSIGN_OR_RETURN(Bytes outer, crypto::Hmac(hash, hmac_key, mac_input));
  Bytes id_object;
  AppendTpm2b(id_object, outer);
  Append(id_object, enc_identity);
  AppendTpm2b(out.credential_blob, id_object);
  std::fill(seed.begin(), seed.end(), uint8_t{0});
  std::fill(sym_key.begin(), sym_key.end(), uint8_t{0});
  std::fill(hmac_key.begin(), hmac_key.end(), uint8_t{0});
  std::fill(plain.begin(), plain.end(), uint8_t{0});
  return out;
}

}  // namespace wimse::attest
