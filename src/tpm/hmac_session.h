// HmacSession: a salted, unbound TPM HMAC session (SHA-256, AES-128-CFB parameter encryption)
// whose session key our code computes, driven through the SAPI of the ESAPI connection.
//
// Why not ESAPI's own session: tpm2-tss 3.2.1 computes every session hash and HMAC in a fresh
// OSSL_LIB_CTX (about six per command), which makes an HMAC-session command cost 4-5 ms of
// client CPU, several times the TPM's own time (bench/README.md). Here the session arithmetic
// runs on algorithms fetched once per process (crypto/kdf.h), for the hot command only:
// TPM2_Sign of a key with an auth value. ESAPI stays in charge of everything else.
//
// The arithmetic (TPM 2.0 Library Part 1: §11.4.10 KDFs, §19.6 HMAC sessions, §21 parameter
// encryption, Annex C.6 ECC salt):
//   salt        = KDFe(SHA-256, Z, "SECRET", ephemeral.x, srk.x, 256)          §C.6.1, §11.4.10.3
//                 Z = x-coordinate of ECDH(ephemeral private, SRK public), P-256
//   encryptedSalt = TPM2B_ENCRYPTED_SECRET(TPMS_ECC_POINT(ephemeral public))
//   sessionKey  = KDFa(SHA-256, salt, "ATH", nonceTPM, nonceCaller, 256)         §19.6.8
//                 (unbound session: no bind authValue in front of the salt)
//   sessionValue = sessionKey || authValue(key, trailing zero bytes removed)      §19.6.5
//                 (the session is not bound to the key, so the key's authValue is included)
//   CFB key||IV = KDFa(SHA-256, sessionValue, "CFB", nonceCaller, nonceTPM, 256)   §21.3
//                 applied to the data bytes (not the size) of the first command parameter
//   cpHash      = SHA-256(commandCode || Name(key) || cpParams)                   §18.7
//                 cpParams as sent, i.e. with the first parameter already encrypted
//   command HMAC = HMAC-SHA-256(sessionValue, cpHash || nonceCaller || nonceTPM || attributes)
//   rpHash      = SHA-256(responseCode || commandCode || rpParams)
//   response HMAC = HMAC-SHA-256(sessionValue, rpHash || nonceTPM' || nonceCaller || attributes)
// Nonces enter the HMAC without their size fields. Checked against swtpm/libtpms: a wrong
// derivation shows up as TPM_RC_AUTH_FAIL or a signature that does not verify.
//
// Ownership and thread-safety: owned by TpmContext (one slot) and used only under its lock.
// The object holds the TPM session handle and the session key; it wipes the key on
// destruction and never touches the TPM from its destructor (Flush() does), so a child after
// fork() can drop its inherited copy safely.
#ifndef WIMSE_TPM_HMAC_SESSION_H_
#define WIMSE_TPM_HMAC_SESSION_H_

#include <openssl/evp.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_sys.h>

#include <array>
#include <cstdint>
#include <memory>
#include <span>

#include "crypto/kdf.h"
#include "util/bytes.h"
#include "util/result.h"

namespace wimse::tpm {

// The session arithmetic as pure functions (no TPM), for HmacSession and for tests that check
// it against an independent implementation.
namespace session_math {

// sessionKey of an unbound, salted session: KDFa(SHA-256, salt, "ATH", nonceTPM, nonceCaller,
// 256). Errors: Layer::kOpenSsl.
Result<SecretBytes> DeriveSessionKey(ByteView salt, ByteView nonce_tpm, ByteView nonce_caller);

// sessionKey || authValue with the auth value's trailing zero bytes removed (the TPM stores and
// uses auth values that way, Part 1 §19.6.5).
SecretBytes SessionValue(ByteView session_key, ByteView auth);

// AES-128-CFB key (first 16 bytes) and IV (last 16) for command parameter encryption:
// KDFa(SHA-256, sessionValue, "CFB", nonceCaller, nonceTPM, 256). `session_value` is the HMAC
// key made from SessionValue(). The caller wipes `out`.
Status CommandCfbKeyIv(crypto::HmacKey& session_value, ByteView nonce_caller, ByteView nonce_tpm,
                       std::span<uint8_t, 32> out);

// cpHash = SHA-256(commandCode || name of the one handle || cpParams).
std::array<uint8_t, 32> CpHash(TPM2_CC command_code, ByteView name, ByteView cp_params);
// rpHash = SHA-256(responseCode || commandCode || rpParams).
std::array<uint8_t, 32> RpHash(TPM2_RC response_code, TPM2_CC command_code, ByteView rp_params);

// The command HMAC: HMAC(sessionValue, cpHash || nonceCaller || nonceTPM || attributes).
Result<Bytes> CommandHmac(crypto::HmacKey& session_value, ByteView cp_hash, ByteView nonce_caller,
                          ByteView nonce_tpm, TPMA_SESSION attributes);
// Checks a response HMAC (constant time): HMAC(sessionValue, rpHash || nonceTPM (new) ||
// nonceCaller || attributes) must equal `received`. A mismatch is Layer::kTpm with a message
// starting "the TPM response HMAC does not verify".
Status VerifyResponseHmac(crypto::HmacKey& session_value, ByteView rp_hash, ByteView nonce_tpm,
                          ByteView nonce_caller, TPMA_SESSION attributes, ByteView received);

}  // namespace session_math

class HmacSession {
 public:
  // Attributes of every command sent in the session: keep the session open, encrypt the first
  // command parameter. Not `encrypt`: TPM2_Sign's response starts with a TPMT_SIGNATURE, not a
  // sized buffer.
  static constexpr TPMA_SESSION kSignAttributes =
      TPMA_SESSION_CONTINUESESSION | TPMA_SESSION_DECRYPT;

  // Starts a salted, unbound HMAC session (TPM2_StartAuthSession through SAPI) with `srk`, a
  // loaded ECC P-256 storage key (the caller keeps it loaded for the duration of the call).
  // TPM side effects: one TPM2_ReadPublic of the SRK and one TPM2_StartAuthSession; the
  // session then occupies one TPM session slot until Flush(). Errors: Layer::kTpm with the
  // response code (TPM_RC_SESSION_MEMORY/HANDLES: no free session slot), Layer::kOpenSsl.
  static Result<std::unique_ptr<HmacSession>> Start(ESYS_CONTEXT* esys, ESYS_TR srk);

  HmacSession(const HmacSession&) = delete;
  HmacSession& operator=(const HmacSession&) = delete;
  // Wipes the session key. Sends nothing to the TPM.
  ~HmacSession();

  // The TPM session handle (0x02xxxxxx).
  TPM2_HANDLE handle() const { return handle_; }

  // TPM2_FlushContext of the session (through SAPI); errors are ignored (a session the TPM
  // already discarded is gone either way). The object must not be used afterwards.
  void Flush(ESYS_CONTEXT* esys);

  // TPM2_Sign of the loaded key `key_handle` (its TPM handle) named `key_name`, authorized by
  // this session with the key's `auth` value (non-empty). The digest is encrypted on the bus;
  // the response HMAC is verified before the signature is returned, and nonceTPM rolls on.
  // TPM_RC_RETRY/YIELDED/TESTING (the TPM did not run the command; the session is unchanged)
  // are resubmitted, up to 5 submissions in all, as ESAPI does.
  // Validation ticket: NULL (the digest was not made by the TPM). Errors: a TPM failure is
  // Layer::kTpm/kTcti carrying the response code (callers classify it: TPM_RC_AUTH_FAIL,
  // stale handle, lockout); a response whose HMAC does not verify is Layer::kTpm with a
  // message starting "the TPM response HMAC does not verify" and no response code. After any
  // error the session must be flushed and not used again (its nonces may be out of step).
  Result<TPMT_SIGNATURE> Sign(ESYS_CONTEXT* esys, TPM2_HANDLE key_handle, ByteView key_name,
                              ByteView auth, const TPM2B_DIGEST& digest,
                              const TPMT_SIG_SCHEME& scheme);

  // Test hook: flips one bit of the next response HMAC received from the TPM before it is
  // verified, to prove the verification runs on the real path.
  void TamperNextResponseForTesting() { tamper_next_response_ = true; }

 private:
  HmacSession() = default;
  // One submission of Sign (fresh nonceCaller, encryption, HMAC, execute, verify).
  Result<TPMT_SIGNATURE> SignOnce(TSS2_SYS_CONTEXT* sys, TPM2_HANDLE key_handle, ByteView key_name,
                                  ByteView auth, const TPM2B_DIGEST& digest,
                                  const TPMT_SIG_SCHEME& scheme);

  TPM2_HANDLE handle_ = 0;
  SecretBytes session_key_;
  TPM2B_NONCE nonce_tpm_{};
  bool tamper_next_response_ = false;
  struct CipherCtxFree {
    void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
  };
  std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree> cipher_;  // reused for every command
};

}  // namespace wimse::tpm

#endif  // WIMSE_TPM_HMAC_SESSION_H_
