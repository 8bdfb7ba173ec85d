// WorkloadKey: a non-exportable signing key made inside the TPM under the storage primary of
// parent 0x40000001, saved as a TSS2 PRIVATE KEY file, and used to sign digests in the TPM.
//
// Attributes: fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, sign (no decrypt, not
// restricted), scheme NULL. The private part exists only as the TPM-wrapped blob.
//
// Sessions: a key with an empty auth value is used with a password session (nothing secret on
// the bus). A key with an auth value (SetAuth, or Create with auth) is used only in the
// context's salted HMAC session with AES-128-CFB parameter encryption (TpmContext::
// SecureSessionLocked), kept open across operations. A wrong auth value is one error naming
// the key ("authorization failed for key ...: TPM_RC_AUTH_FAIL") and is not retried: each
// failure counts toward the TPM's dictionary-attack lockout. After such a failure the key
// refuses every further use locally (no TPM command) until SetAuth gives a new value or the
// TPM's lockout interval has passed (it has then forgiven the strike, so one more try can never
// add up to a lockout; a value that has become right meanwhile then works): a server
// whose key was configured with a wrong pass phrase would otherwise spend one strike per TLS
// handshake, and any unauthenticated client could drive the TPM into lockout. The refusal is
// shared by every WorkloadKey for the same key and auth value in the process and in every process
// forked after the key was opened (tpm/auth_latch.h): a reloaded key, a key decoded per
// connection and a pre-fork server's workers all get one try in all, and concurrent first tries
// wait for the first answer instead of each spending a strike.
//
// A key file whose parent needs an auth value is refused after the TPM's first TPM_RC_AUTH_FAIL
// on TPM2_Load (parents are used with an empty auth value), shared the same way.
//
// Keys whose public area needs a policy session (userWithAuth clear) or that are restricted
// (attestation keys) are refused when they are opened.
#ifndef WIMSE_TPM_WORKLOAD_KEY_H_
#define WIMSE_TPM_WORKLOAD_KEY_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "crypto/ossl.h"
#include "crypto/signer.h"
#include "keyfile/tss2_key.h"
#include "tpm/auth_latch.h"
#include "tpm/context.h"

namespace wimse::tpm {

// What TPM2_Create returned about a key's creation (TPM 2.0 Part 3 §12.1), kept so the key's
// creation can later be certified (TPM2_CertifyCreation, attest/evidence.h): the marshalled
// TPM2B_CREATION_DATA, TPM2B_DIGEST creationHash and TPMT_TK_CREATION creationTicket, exactly as
// tss2-mu marshals them. Nothing secret: the ticket is an HMAC only this TPM can check.
struct KeyCreation {
  Bytes creation_data;
  Bytes creation_hash;
  Bytes creation_ticket;
};

class WorkloadKey {
 public:
  // Creates a key in the TPM (TPM2_Create under the SRK). TPM side effects: SRK created or
  // context-loaded and flushed; no object left loaded except through the context's cache.
  static Result<std::shared_ptr<WorkloadKey>> Create(std::shared_ptr<TpmContext> ctx, KeyAlg alg);
  // Like Create, with an auth value (1..32 bytes) the key will demand. TPM2_Create runs in the
  // salted, encrypted session so the auth value in TPM2B_SENSITIVE_CREATE is encrypted on the
  // bus. The returned key carries `auth` (SetAuth); its file has emptyAuth (TRUE without an auth
  // value, an explicit FALSE with one, as tpm2-openssl writes it: see Create in the .cc).
  static Result<std::shared_ptr<WorkloadKey>> Create(std::shared_ptr<TpmContext> ctx, KeyAlg alg,
                                                     const SecretBytes& auth);
  // Wraps an existing key file (no TPM I/O until the first use).
  static Result<std::shared_ptr<WorkloadKey>> FromKeyFile(std::shared_ptr<TpmContext> ctx,
                                                          Tss2KeyFile file);
  // Reads a TSS2 PRIVATE KEY file (PEM or DER); errors name the path.
  static Result<std::shared_ptr<WorkloadKey>> Open(std::shared_ptr<TpmContext> ctx,
                                                   const std::string& path);

  const Tss2KeyFile& key_file() const { return file_; }
  // Writes the key file atomically with mode 0600.
  Status Save(const std::string& path) const { return WriteTss2KeyFile(path, file_); }

  EVP_PKEY* public_key() const { return public_key_.get(); }
  KeyAlg alg() const { return alg_; }
  const TPMT_PUBLIC& public_area() const { return public_area_; }
  // The key's TPM Name (nameAlg || H(TPMT_PUBLIC)).
  const Bytes& name() const { return name_; }
  const std::shared_ptr<TpmContext>& context() const { return ctx_; }

  // Signs `digest` in the TPM (TPM2_Sign, NULL hash-check ticket). EC: raw r||s padded to the
  // field size; RSA: RSASSA PKCS#1 v1.5. Checks the digest length before calling the TPM.
  // Thread-safe (serialised on the context lock). Loads the key through the context cache.
  Result<Bytes> SignDigest(HashAlg hash, ByteView digest) const;

  // Within TpmContext::Run(): the key's loaded ESYS_TR (cached; valid until the next load).
  Result<ESYS_TR> LoadLocked(ESYS_CONTEXT* esys) const;

  // Within TpmContext::Run(): prepares the authorization of one command that uses the loaded
  // key `tr` (e.g. TPM2_Certify's objectHandle) and returns the session to pass for it: the
  // password session for a key without an auth value; for a key with one, the context's salted
  // HMAC session (TpmContext::SecureSessionLocked) with parameter encryption of the first
  // command parameter (and of the response's, when `encrypt_response`). Sets the auth value
  // ESAPI uses for `tr`. Fails before any TPM command when CheckAuthUsable fails (the key file
  // says the key needs an auth value and none was set, or the TPM rejected it earlier). After a
  // failed command the caller reports the response code with AuthorizationError() and, if the
  // session was not the password session, drops it.
  Result<ESYS_TR> AuthorizeLocked(ESYS_CONTEXT* esys, ESYS_TR tr, bool encrypt_response) const;
  // The error for a failed command `what` that used AuthorizeLocked: authorization failures and
  // lockout get the same reasons (and no retry) as signing; anything else is the decoded code.
  // An authorization failure also marks the key's auth value as rejected (auth_rejected).
  // `forgive_after` is the TPM's lockout interval when the caller read it (after the failure):
  // the rejection lapses then (AuthLatch); zero keeps it for the life of the process tree.
  Error AuthorizationError(const char* what, TSS2_RC rc,
                           std::chrono::seconds forgive_after = std::chrono::seconds(0)) const;

  // --- Issue 3 extensions (declared here so the key layer and the provider agree) ---------

  // RSA signature schemes. kRsaPss produces salt length = digest length (TLS 1.3 rule).
  enum class RsaScheme { kPkcs1v15, kPss };
  // Like SignDigest, with an explicit RSA scheme (ignored for EC keys).
  Result<Bytes> SignDigestRsa(HashAlg hash, ByteView digest, RsaScheme scheme) const;

  // Sets the key's auth value (wiped on destruction, never printed). Every command that uses a
  // key with a non-empty auth value runs in a salted HMAC session with parameter encryption.
  // Clears an earlier rejection (auth_rejected). A value longer than kMaxAuthValueSize
  // (keyfile/auth_source.h) is kept but every use fails before any TPM command with
  // CheckAuthValueSize's error. Not thread-safe against concurrent signing: set it before the
  // key is shared.
  void SetAuth(SecretBytes auth);
  // True once the TPM answered TPM_RC_AUTH_FAIL or TPM_RC_BAD_AUTH for this key's current auth
  // value (empty included). Every later SignDigest/AuthorizeLocked then fails before any TPM
  // command ("auth value was rejected by the TPM earlier; not retried ..."), so the key can
  // cost the dictionary-attack counter one strike per auth value per lockout interval (the time
  // the TPM takes to forgive it), whatever its callers do.
  // Thread-safe. Looked up in AuthLatch until the TPM first accepts the value.
  bool auth_rejected() const { return RejectedRc() != 0; }
  // Whether the key can be used now without a TPM command being wasted on its authorization:
  // the auth value the key file demands is set, is not too long, and was not rejected earlier.
  // Called by SignDigest and AuthorizeLocked; callers may check first for their own message.
  // No TPM I/O.
  Status CheckAuthUsable() const;
  bool needs_auth() const { return !file_.empty_auth; }
  // True when the key file has no emptyAuth field (the draft's "auth required"), as opposed to
  // an explicit FALSE (ambiguous between peers, tpm2-tools #3458). Signing such a key without
  // SetAuth fails before any TPM command (no dictionary-attack strike).
  // "key <path>" or "key handle:0x81...", or the label itself when it already says "TPM key".
  std::string KeyNoun() const {
    return label_.rfind("TPM key ", 0) == 0 ? label_ : "key " + label_;
  }
  bool auth_required_by_file() const { return !file_.empty_auth && !file_.empty_auth_present; }
  // True once SetAuth was called (with any value, empty included).
  bool has_auth() const { return auth_ != nullptr; }

  // A key made persistent at `handle` (0x81xxxxxx): no key file; loaded with
  // Esys_TR_FromTPMPublic; its public area is read with TPM2_ReadPublic (one TPM command).
  static Result<std::shared_ptr<WorkloadKey>> OpenPersistent(std::shared_ptr<TpmContext> ctx,
                                                             uint32_t handle);
  // 0 for file-backed keys.
  uint32_t persistent_handle() const { return persistent_handle_; }

  // Makes this (file-backed) key persistent at `handle` with TPM2_EvictControl (owner
  // hierarchy, empty owner auth) and returns the persistent key, carrying this key's auth
  // value. Errors: handle outside 0x81xxxxxx (usage), handle already in use (TPM_RC_NV_DEFINED).
  Result<std::shared_ptr<WorkloadKey>> Persist(uint32_t handle) const;
  // Removes the persistent object at `handle` (TPM2_EvictControl). A handle with no object is
  // an error naming it. Unless `any_object`, only a workload-style key is removed (unrestricted,
  // sign, not decrypt): an EK, SRK, AK or anything else another tool persisted is refused with
  // what it is (one TPM2_ReadPublic first), so a typo cannot destroy the TPM's identity.
  static Status EvictPersistent(std::shared_ptr<TpmContext> ctx, uint32_t handle,
                                bool any_object = false);

  // Set on a key made by Create in this process: its creation data, hash and ticket.
  const std::optional<KeyCreation>& creation() const { return creation_; }

  // How errors name this key: the file path, "handle:0x81...", or "TPM key <name>".
  const std::string& label() const { return label_; }
  void set_label(std::string label) { label_ = std::move(label); }

 private:
  WorkloadKey() = default;
  std::shared_ptr<TpmContext> ctx_;
  Tss2KeyFile file_;
  TPMT_PUBLIC public_area_{};
  EvpPkeyPtr public_key_;
  KeyAlg alg_ = KeyAlg::kEcP256;
  Bytes name_;
  uint32_t persistent_handle_ = 0;
  std::shared_ptr<SecretBytes> auth_;
  std::string label_;
  std::optional<KeyCreation> creation_;
  // Set after the TPM accepted the current auth value once: the latch is not consulted again.
  // Every rejection lives in AuthLatch alone (one place, shared by the process tree, lapsing
  // when the TPM forgives the strike).
  mutable std::atomic<bool> auth_accepted_{false};
  // The TPM's response code when it rejected the current auth value (AuthLatch); 0 if not.
  uint32_t RejectedRc() const;

  // This key with its current auth value, and loading it under its parent, in AuthLatch.
  AuthLatch::Fingerprint AuthFingerprint() const;
  AuthLatch::Fingerprint ParentFingerprint() const;
  Error MissingAuthError() const;
  Error RejectedAuthError(uint32_t earlier_rc) const;
  Error ParentAuthError(uint32_t rc) const;
  Result<Bytes> SignLocked(ESYS_CONTEXT* esys, const TPM2B_DIGEST& digest,
                           const TPMT_SIG_SCHEME& scheme) const;
};

// Opens a key by reference (keyfile/key_ref.h): a TSS2 key file path, or "handle:0x81xxxxxx"
// for a persistent key (one TPM2_ReadPublic). The CLI resolves every --key through this.
Result<std::shared_ptr<WorkloadKey>> OpenKey(std::shared_ptr<TpmContext> ctx,
                                             const std::string& ref);

// A Signer over a WorkloadKey (keeps the key alive).
class TpmSigner : public Signer {
 public:
  explicit TpmSigner(std::shared_ptr<WorkloadKey> key) : key_(std::move(key)) {}
  Result<Bytes> SignDigest(HashAlg hash, ByteView digest) override {
    return key_->SignDigest(hash, digest);
  }
  EVP_PKEY* public_key() const override { return key_->public_key(); }
  KeyAlg key_alg() const override { return key_->alg(); }
  const std::shared_ptr<WorkloadKey>& key() const { return key_; }

 private:
  std::shared_ptr<WorkloadKey> key_;
};

// Opens the key at `key_path` (a file or "handle:0x81xxxxxx", see OpenKey) on the TPM named by
// `tcti` (resolved with ResolveTcti) and returns a TpmSigner. Uses the process-wide
// SharedContext.
Result<std::unique_ptr<TpmSigner>> OpenTpmSigner(const std::string& tcti,
                                                 const std::string& key_path);

}  // namespace wimse::tpm

#endif  // WIMSE_TPM_WORKLOAD_KEY_H_
