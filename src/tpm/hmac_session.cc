#include "tpm/hmac_session.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <tss2/tss2_mu.h>

#include <algorithm>
#include <string>

#include "crypto/ossl.h"
#include "crypto/public_key.h"
#include "crypto/tpm_public.h"
#include "tpm/context.h"

namespace wimse::tpm {

namespace {

constexpr size_t kDigestSize = 32;  // SHA-256: the session hash
constexpr size_t kNonceSize = 32;

void PutU32(uint8_t* out, uint32_t v) {
  out[0] = static_cast<uint8_t>(v >> 24);
  out[1] = static_cast<uint8_t>(v >> 16);
  out[2] = static_cast<uint8_t>(v >> 8);
  out[3] = static_cast<uint8_t>(v);
}

ByteView NonceView(const TPM2B_NONCE& n) { return ByteView(n.buffer, n.size); }

Result<TSS2_SYS_CONTEXT*> SysContext(ESYS_CONTEXT* esys) {
  TSS2_SYS_CONTEXT* sys = nullptr;
  TSS2_RC rc = Esys_GetSysContext(esys, &sys);
  if (rc != TSS2_RC_SUCCESS || sys == nullptr) {
    return Error(Layer::kInternal, "Esys_GetSysContext failed", rc);
  }
  return sys;
}

Status FreshNonce(TPM2B_NONCE& nonce) {
  nonce.size = kNonceSize;
  if (RAND_bytes(nonce.buffer, kNonceSize) != 1) return OpenSslError("RAND_bytes (nonceCaller)");
  return OkStatus();
}

// Z, the ECDH shared x-coordinate, of `ephemeral` with `peer`. Wiped by the caller.
Result<SecretBytes> EcdhZ(EVP_PKEY* ephemeral, EVP_PKEY* peer) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, ephemeral, nullptr));
  size_t len = 0;
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      EVP_PKEY_derive_set_peer(ctx.get(), peer) != 1 ||
      EVP_PKEY_derive(ctx.get(), nullptr, &len) != 1 || len > 66) {
    return OpenSslError("ECDH with the storage primary's public key");
  }
  uint8_t z[66];
  if (EVP_PKEY_derive(ctx.get(), z, &len) != 1) {
    OPENSSL_cleanse(z, sizeof(z));
    return OpenSslError("ECDH with the storage primary's public key");
  }
  SecretBytes out(ByteView(z, len));
  OPENSSL_cleanse(z, sizeof(z));
  return out;
}

}  // namespace

namespace session_math {

Result<SecretBytes> DeriveSessionKey(ByteView salt, ByteView nonce_tpm, ByteView nonce_caller) {
  WIMSE_ASSIGN_OR_RETURN(crypto::HmacKey prf, crypto::HmacKey::Make("SHA256", salt));
  uint8_t key[kDigestSize];
  Status s = crypto::KdfA(prf, "ATH", nonce_tpm, nonce_caller, std::span<uint8_t>(key));
  SecretBytes out(ByteView(key, sizeof(key)));
  OPENSSL_cleanse(key, sizeof(key));
  if (!s.ok()) return std::move(s).error();
  return out;
}

SecretBytes SessionValue(ByteView session_key, ByteView auth) {
  size_t auth_len = auth.size();
  while (auth_len > 0 && auth[auth_len - 1] == 0) --auth_len;
  uint8_t buf[kDigestSize + sizeof(TPMU_HA)];
  size_t n = std::min(session_key.size(), kDigestSize);
  auth_len = std::min(auth_len, sizeof(TPMU_HA));
  std::copy(session_key.begin(), session_key.begin() + static_cast<std::ptrdiff_t>(n), buf);
  std::copy(auth.begin(), auth.begin() + static_cast<std::ptrdiff_t>(auth_len), buf + n);
  SecretBytes out(ByteView(buf, n + auth_len));
  OPENSSL_cleanse(buf, sizeof(buf));
  return out;
}

Status CommandCfbKeyIv(crypto::HmacKey& session_value, ByteView nonce_caller, ByteView nonce_tpm,
                       std::span<uint8_t, 32> out) {
  return crypto::KdfA(session_value, "CFB", nonce_caller, nonce_tpm, std::span<uint8_t>(out));
}

namespace {
std::array<uint8_t, 32> Sha256Of(std::initializer_list<ByteView> parts) {
  std::array<uint8_t, 32> out{};
  static const EVP_MD* md = crypto::PrefetchedDigest("SHA256");
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  bool ok = ctx && md != nullptr && EVP_DigestInit_ex2(ctx.get(), md, nullptr) == 1;
  for (ByteView p : parts) {
    ok = ok && EVP_DigestUpdate(ctx.get(), p.data(), p.size()) == 1;
  }
  unsigned int len = 0;
  ok = ok && EVP_DigestFinal_ex(ctx.get(), out.data(), &len) == 1 && len == out.size();
  // A failed hash leaves zeros: the HMAC over it cannot match what the TPM computed, so the
  // command fails closed (TPM_RC_AUTH_FAIL or a response HMAC mismatch).
  if (!ok) out.fill(0);
  return out;
}
}  // namespace

std::array<uint8_t, 32> CpHash(TPM2_CC command_code, ByteView name, ByteView cp_params) {
  uint8_t cc[4];
  PutU32(cc, command_code);
  return Sha256Of({ByteView(cc), name, cp_params});
}

std::array<uint8_t, 32> RpHash(TPM2_RC response_code, TPM2_CC command_code, ByteView rp_params) {
  uint8_t rc[4];
  uint8_t cc[4];
  PutU32(rc, response_code);
  PutU32(cc, command_code);
  return Sha256Of({ByteView(rc), ByteView(cc), rp_params});
}

Result<Bytes> CommandHmac(crypto::HmacKey& session_value, ByteView cp_hash, ByteView nonce_caller,
                          ByteView nonce_tpm, TPMA_SESSION attributes) {
  uint8_t attrs = attributes;
  return session_value.Mac({cp_hash, nonce_caller, nonce_tpm, ByteView(&attrs, 1)});
}

Status VerifyResponseHmac(crypto::HmacKey& session_value, ByteView rp_hash, ByteView nonce_tpm,
                          ByteView nonce_caller, TPMA_SESSION attributes, ByteView received) {
  uint8_t attrs = attributes;
  WIMSE_ASSIGN_OR_RETURN(
      Bytes expected, session_value.Mac({rp_hash, nonce_tpm, nonce_caller, ByteView(&attrs, 1)}));
  if (!ConstantTimeEqual(expected, received)) {
    return Error(Layer::kTpm,
                 "the TPM response HMAC does not verify (the response was altered between the "
                 "TPM and this process, or the session is out of step); the session is dropped "
                 "and the signature discarded");
  }
  return OkStatus();
}

}  // namespace session_math

HmacSession::~HmacSession() { OPENSSL_cleanse(&nonce_tpm_, sizeof(nonce_tpm_)); }

Result<std::unique_ptr<HmacSession>> HmacSession::Start(ESYS_CONTEXT* esys, ESYS_TR srk) {
  WIMSE_ASSIGN_OR_RETURN(TSS2_SYS_CONTEXT * sys, SysContext(esys));
  TPM2_HANDLE srk_handle = 0;
  TSS2_RC rc = Esys_TR_GetTpmHandle(esys, srk, &srk_handle);
  if (rc != TSS2_RC_SUCCESS) return TpmError("Esys_TR_GetTpmHandle (storage primary)", rc);
  TPM2B_PUBLIC* srk_pub = nullptr;
  rc = Esys_ReadPublic(esys, srk, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &srk_pub, nullptr,
                       nullptr);
  std::unique_ptr<TPM2B_PUBLIC, void (*)(void*)> pub_owner(srk_pub, Esys_Free);
  if (rc != TSS2_RC_SUCCESS) return TpmError("TPM2_ReadPublic (storage primary)", rc);
  const TPMT_PUBLIC& area = srk_pub->publicArea;
  if (area.type != TPM2_ALG_ECC || area.parameters.eccDetail.curveID != TPM2_ECC_NIST_P256 ||
      area.nameAlg != TPM2_ALG_SHA256) {
    return Error(Layer::kInternal, "the storage primary is not an ECC P-256/SHA-256 key");
  }
  // The public area read back must be the object ESAPI knows as the SRK (its Name came with
  // TPM2_CreatePrimary, checked by ESAPI against that response's public area): an interposer
  // that swaps only this unauthenticated read for its own key would learn the salt, the session
  // key and, from one command HMAC, a guessable auth value offline. (An interposer active from
  // the first TPM2_CreatePrimary on is out of reach of any check without a pinned SRK Name.)
  {
    TPM2B_NAME* esys_name = nullptr;
    rc = Esys_TR_GetName(esys, srk, &esys_name);
    std::unique_ptr<TPM2B_NAME, void (*)(void*)> name_owner(esys_name, Esys_Free);
    if (rc != TSS2_RC_SUCCESS) return TpmError("Esys_TR_GetName (storage primary)", rc);
    WIMSE_ASSIGN_OR_RETURN(Bytes read_name, TpmName(area));
    if (read_name.size() != esys_name->size ||
        CRYPTO_memcmp(read_name.data(), esys_name->name, read_name.size()) != 0) {
      return Error(Layer::kTpm,
                   "TPM2_ReadPublic of the storage primary returned another key "
                   "than the one created (TPM bus tampered with?): no session "
                   "salted to it");
    }
  }
  WIMSE_ASSIGN_OR_RETURN(EvpPkeyPtr srk_key, PublicKeyFromTpmPublic(area));

  // Ephemeral P-256 key, Z = ECDH x-coordinate, salt = KDFe(SHA-256, Z, "SECRET", Qe.x, Qs.x).
  EvpPkeyPtr eph(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!eph) return OpenSslError("ephemeral P-256 key for the session salt");
  WIMSE_ASSIGN_OR_RETURN(SecretBytes z, EcdhZ(eph.get(), srk_key.get()));
  WIMSE_ASSIGN_OR_RETURN(Bytes point, EcPublicPoint(eph.get()));  // 04 || X || Y
  if (point.size() != 65) return Error(Layer::kInternal, "unexpected P-256 point size");
  ByteView ex(point.data() + 1, 32);
  ByteView ey(point.data() + 33, 32);
  ByteView srk_x(area.unique.ecc.x.buffer, area.unique.ecc.x.size);
  WIMSE_ASSIGN_OR_RETURN(Bytes salt_bytes,
                         crypto::KdfE("SHA256", z.view(), "SECRET", ex, srk_x, kDigestSize * 8));
  SecretBytes salt(salt_bytes);
  OPENSSL_cleanse(salt_bytes.data(), salt_bytes.size());

  TPMS_ECC_POINT eph_point{};
  eph_point.x.size = 32;
  std::copy(ex.begin(), ex.end(), eph_point.x.buffer);
  eph_point.y.size = 32;
  std::copy(ey.begin(), ey.end(), eph_point.y.buffer);
  TPM2B_ENCRYPTED_SECRET encrypted_salt{};
  size_t offset = 0;
  rc = Tss2_MU_TPMS_ECC_POINT_Marshal(&eph_point, encrypted_salt.secret,
                                      sizeof(encrypted_salt.secret), &offset);
  if (rc != TSS2_RC_SUCCESS) return Error(Layer::kInternal, "marshal TPMS_ECC_POINT", rc);
  encrypted_salt.size = static_cast<UINT16>(offset);

  TPM2B_NONCE nonce_caller{};
  WIMSE_RETURN_IF_ERROR(FreshNonce(nonce_caller));
  TPMT_SYM_DEF symmetric{};
  symmetric.algorithm = TPM2_ALG_AES;
  symmetric.keyBits.aes = 128;
  symmetric.mode.aes = TPM2_ALG_CFB;
  TPMI_SH_AUTH_SESSION handle = 0;
  TPM2B_NONCE nonce_tpm{};
  rc = Tss2_Sys_StartAuthSession(sys, srk_handle, TPM2_RH_NULL, nullptr, &nonce_caller,
                                 &encrypted_salt, TPM2_SE_HMAC, &symmetric, TPM2_ALG_SHA256,
                                 &handle, &nonce_tpm, nullptr);
  if (rc == TPM2_RC_SESSION_MEMORY || rc == TPM2_RC_SESSION_HANDLES) {
    return Error(Layer::kTpm,
                 "TPM2_StartAuthSession: the TPM has no free session slot (other "
                 "clients hold them)",
                 rc);
  }
  if (rc != TSS2_RC_SUCCESS) {
    return TpmError("TPM2_StartAuthSession (salted to the storage primary, AES-128-CFB)", rc);
  }
  if (nonce_tpm.size != kDigestSize) {
    Tss2_Sys_FlushContext(sys, handle);
    return Error(Layer::kTpm, "TPM2_StartAuthSession returned a " + std::to_string(nonce_tpm.size) +
                                  "-byte nonceTPM (SHA-256 "
                                  "sessions use 32)");
  }
  auto session = std::unique_ptr<HmacSession>(new HmacSession());
  session->handle_ = handle;
  session->nonce_tpm_ = nonce_tpm;
  auto key =
      session_math::DeriveSessionKey(salt.view(), NonceView(nonce_tpm), NonceView(nonce_caller));
  if (key.ok()) session->cipher_.reset(EVP_CIPHER_CTX_new());
  if (!key.ok() || !session->cipher_) {
    session->Flush(esys);
    if (!key.ok()) return std::move(key).error();
    return OpenSslError("EVP_CIPHER_CTX_new");
  }
  session->session_key_ = std::move(key).value();
  return session;
}

void HmacSession::Flush(ESYS_CONTEXT* esys) {
  if (handle_ == 0) return;
  auto sys = SysContext(esys);
  if (sys.ok()) Tss2_Sys_FlushContext(*sys, handle_);
  handle_ = 0;
  session_key_ = SecretBytes();  // wiped by SecretBytes
}

Result<TPMT_SIGNATURE> HmacSession::Sign(ESYS_CONTEXT* esys, TPM2_HANDLE key_handle,
                                         ByteView key_name, ByteView auth,
                                         const TPM2B_DIGEST& digest,
                                         const TPMT_SIG_SCHEME& scheme) {
  if (handle_ == 0) return Error(Layer::kInternal, "HmacSession used after Flush");
  if (digest.size > sizeof(digest.buffer)) {
    return Error(Layer::kUsage, "TPM2_Sign: digest of " + std::to_string(digest.size) +
                                    " bytes is larger than a TPM2B_DIGEST");
  }
  WIMSE_ASSIGN_OR_RETURN(TSS2_SYS_CONTEXT * sys, SysContext(esys));
  constexpr int kMaxSubmissions = 5;
  for (int i = 1;; ++i) {
    Result<TPMT_SIGNATURE> sig = SignOnce(sys, key_handle, key_name, auth, digest, scheme);
    TSS2_RC rc = sig.ok() ? TSS2_RC_SUCCESS : sig.error().tss2_rc();
    bool again = rc == TPM2_RC_RETRY || rc == TPM2_RC_YIELDED || rc == TPM2_RC_TESTING;
    if (!again || i == kMaxSubmissions) return sig;
  }
}

Result<TPMT_SIGNATURE> HmacSession::SignOnce(TSS2_SYS_CONTEXT* sys, TPM2_HANDLE key_handle,
                                             ByteView key_name, ByteView auth,
                                             const TPM2B_DIGEST& digest,
                                             const TPMT_SIG_SCHEME& scheme) {
  TPM2B_NONCE nonce_caller{};
  WIMSE_RETURN_IF_ERROR(FreshNonce(nonce_caller));
  SecretBytes session_value = session_math::SessionValue(session_key_.view(), auth);
  WIMSE_ASSIGN_OR_RETURN(crypto::HmacKey mac,
                         crypto::HmacKey::Make("SHA256", session_value.view()));

  // Parameter encryption of the first command parameter (the digest's bytes, not its size).
  TPM2B_DIGEST encrypted = digest;
  {
    std::array<uint8_t, 32> key_iv{};
    Status s =
        session_math::CommandCfbKeyIv(mac, NonceView(nonce_caller), NonceView(nonce_tpm_), key_iv);
    if (s.ok()) {
      s = crypto::AesCfb(/*encrypt=*/true, ByteView(key_iv.data(), 16),
                         ByteView(key_iv.data() + 16, 16), ByteView(digest.buffer, digest.size),
                         std::span<uint8_t>(encrypted.buffer, digest.size), cipher_.get());
    }
    OPENSSL_cleanse(key_iv.data(), key_iv.size());
    if (!s.ok()) return std::move(s).error();
  }

  TPMT_TK_HASHCHECK validation{};
  validation.tag = TPM2_ST_HASHCHECK;
  validation.hierarchy = TPM2_RH_NULL;
  TSS2_RC rc = Tss2_Sys_Sign_Prepare(sys, key_handle, &encrypted, &scheme, &validation);
  if (rc != TSS2_RC_SUCCESS) return TpmError("Tss2_Sys_Sign_Prepare", rc);
  const uint8_t* cp = nullptr;
  size_t cp_size = 0;
  rc = Tss2_Sys_GetCpBuffer(sys, &cp_size, &cp);
  if (rc != TSS2_RC_SUCCESS) return TpmError("Tss2_Sys_GetCpBuffer", rc);
  std::array<uint8_t, 32> cp_hash =
      session_math::CpHash(TPM2_CC_Sign, key_name, ByteView(cp, cp_size));

  TSS2L_SYS_AUTH_COMMAND cmd{};
  cmd.count = 1;
  TPMS_AUTH_COMMAND& a = cmd.auths[0];
  a.sessionHandle = handle_;
  a.nonce = nonce_caller;
  a.sessionAttributes = kSignAttributes;
  WIMSE_ASSIGN_OR_RETURN(Bytes hmac,
                         session_math::CommandHmac(mac, cp_hash, NonceView(nonce_caller),
                                                   NonceView(nonce_tpm_), kSignAttributes));
  a.hmac.size = static_cast<UINT16>(hmac.size());
  std::copy(hmac.begin(), hmac.end(), a.hmac.buffer);
  rc = Tss2_Sys_SetCmdAuths(sys, &cmd);
  if (rc != TSS2_RC_SUCCESS) return TpmError("Tss2_Sys_SetCmdAuths", rc);
  rc = Tss2_Sys_Execute(sys);
  if (rc != TSS2_RC_SUCCESS) return TpmError("TPM2_Sign (salted session)", rc);

  TSS2L_SYS_AUTH_RESPONSE rsp{};
  rc = Tss2_Sys_GetRspAuths(sys, &rsp);
  if (rc != TSS2_RC_SUCCESS || rsp.count != 1) {
    return Error(Layer::kTpm, "TPM2_Sign: the response carries no session area", rc);
  }
  const TPMS_AUTH_RESPONSE& r = rsp.auths[0];
  const uint8_t* rp = nullptr;
  size_t rp_size = 0;
  // Order matters: Tss2_Sys_GetRspAuths above checked parameterSize and the auth area against
  // the response size; Tss2_Sys_GetRpBuffer (tss2-sys 3.2.1) trusts parameterSize.
  rc = Tss2_Sys_GetRpBuffer(sys, &rp_size, &rp);
  if (rc != TSS2_RC_SUCCESS) return TpmError("Tss2_Sys_GetRpBuffer", rc);
  std::array<uint8_t, 32> rp_hash =
      session_math::RpHash(TPM2_RC_SUCCESS, TPM2_CC_Sign, ByteView(rp, rp_size));
  TPM2B_AUTH received = r.hmac;
  if (tamper_next_response_) {
    tamper_next_response_ = false;
    if (received.size > 0) received.buffer[0] ^= 0x01;
  }
  WIMSE_RETURN_IF_ERROR(session_math::VerifyResponseHmac(
      mac, rp_hash, NonceView(r.nonce), NonceView(nonce_caller), r.sessionAttributes,
      ByteView(received.buffer, received.size)));
  if ((r.sessionAttributes & TPMA_SESSION_CONTINUESESSION) == 0) {
    return Error(Layer::kTpm, "TPM2_Sign: the TPM closed the session (continueSession clear)");
  }
  if (r.nonce.size != kDigestSize) {
    return Error(Layer::kTpm, "TPM2_Sign: the response's nonceTPM is " +
                                  std::to_string(r.nonce.size) + " bytes (32 expected)");
  }
  nonce_tpm_ = r.nonce;  // roll: the TPM's new nonce is nonceOlder for the next command

  TPMT_SIGNATURE sig{};
  rc = Tss2_Sys_Sign_Complete(sys, &sig);
  if (rc != TSS2_RC_SUCCESS) return TpmError("TPM2_Sign (unmarshal the signature)", rc);
  return sig;
}

}  // namespace wimse::tpm
