#include "tpm/workload_key.h"

#include <openssl/crypto.h>
#include <tss2/tss2_mu.h>

#include <chrono>
#include <cstdio>

#include "crypto/ecdsa.h"
#include "crypto/public_key.h"
#include "crypto/tpm_public.h"
#include "keyfile/auth_source.h"
#include "keyfile/key_ref.h"
#include "tpm/attestation.h"
#include "tpm/hmac_session.h"
#include "tpm/tcti.h"
#include "tpm/templates.h"

namespace wimse::tpm {

namespace {

// TPM response codes, decoded by shape (TPM 2.0 Part 2, 6.6): a format-one code carries the
// error number in bits 0..5 and the handle/parameter/session number in bits 6..11.
bool IsTpmLayer(TSS2_RC rc) { return (rc & TSS2_RC_LAYER_MASK) == 0; }
bool IsFmt1(TSS2_RC rc, TPM2_RC code) {
  return IsTpmLayer(rc) && (rc & TPM2_RC_FMT1) != 0 && (rc & 0x3f) == (code & 0x3f);
}
bool IsAuthFailure(TSS2_RC rc) {
  return IsFmt1(rc, TPM2_RC_AUTH_FAIL) || IsFmt1(rc, TPM2_RC_BAD_AUTH);
}
bool IsLockout(TSS2_RC rc) { return rc == TPM2_RC_LOCKOUT; }
// TPM2_PT_LOCKOUT_INTERVAL: the seconds after which the TPM forgives one authorization failure.
// Zero when it cannot be read, or is 0 (dictionary-attack protection off): then a rejection is
// kept for good.
std::chrono::seconds LockoutInterval(ESYS_CONTEXT* esys) {
  TPMS_CAPABILITY_DATA* caps = nullptr;
  TSS2_RC rc =
      Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_TPM_PROPERTIES,
                         TPM2_PT_LOCKOUT_INTERVAL, 1, nullptr, &caps);
  std::chrono::seconds out(0);
  if (rc == TSS2_RC_SUCCESS && caps != nullptr && caps->data.tpmProperties.count == 1 &&
      caps->data.tpmProperties.tpmProperty[0].property == TPM2_PT_LOCKOUT_INTERVAL) {
    out = std::chrono::seconds(caps->data.tpmProperties.tpmProperty[0].value);
  }
  Esys_Free(caps);
  return out;
}

bool IsStaleHandle(TSS2_RC rc) {
  // TPM_RC_REFERENCE_H0..H6 (0x910..0x916: a handle refers to a flushed object).
  return (IsTpmLayer(rc) && (rc & ~0x7u) == TPM2_RC_REFERENCE_H0) || IsFmt1(rc, TPM2_RC_HANDLE);
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

// Sets (or clears, for nullptr/empty) the auth value ESAPI uses for `tr`, wiping the copy.
void SetTrAuth(ESYS_CONTEXT* esys, ESYS_TR tr, const SecretBytes* auth) {
  TPM2B_AUTH value{};
  if (auth != nullptr && !auth->empty() && auth->size() <= sizeof(value.buffer)) {
    value.size = static_cast<UINT16>(auth->size());
    std::copy(auth->view().begin(), auth->view().end(), value.buffer);
  }
  Esys_TR_SetAuth(esys, tr, &value);
  OPENSSL_cleanse(&value, sizeof(value));
}

// Session attributes for a command in the secure session: keep it open; encrypt the first
// command parameter (decrypt) and, when the response's first parameter is a sized buffer, the
// response too (encrypt). TPM2_Sign returns a TPMT_SIGNATURE, so it gets decrypt only (the TPM
// rejects encrypt with TPM_RC_ATTRIBUTES there).
void SetSecureAttributes(ESYS_CONTEXT* esys, ESYS_TR session, bool encrypt_response) {
  TPMA_SESSION attrs = TPMA_SESSION_CONTINUESESSION | TPMA_SESSION_DECRYPT;
  if (encrypt_response) attrs |= TPMA_SESSION_ENCRYPT;
  Esys_TRSess_SetAttributes(esys, session, attrs, 0xff);
}

// TPM2_Sign and TPM2_Certify need USER role authorization of the key: with userWithAuth clear
// that is a policy session only (TPM 2.0 Part 1, 19.7.3), which we do not build. Without this
// check such a key loads and every signature fails with a bare TPM_RC_AUTH_UNAVAILABLE (0x12f).
constexpr char kPolicyOnlyKey[] =
    "key requires a policy session (userWithAuth clear); not supported";

std::string NameLabel(const Bytes& name) {
  std::string hex = HexEncode(name);
  return "TPM key " + hex.substr(0, std::min<size_t>(hex.size(), 20)) + "...";
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
  if ((area.objectAttributes & TPMA_OBJECT_USERWITHAUTH) == 0) {
    return Error(Layer::kPolicy, kPolicyOnlyKey);
  }
  bool permanent_owner = file.parent == kOwnerHierarchyParent && !file.rsa_parent;
  bool persistent = (file.parent >> 24) == TPM2_HT_PERSISTENT;
  if (!permanent_owner && !persistent) {
    return Error(Layer::kPolicy,
                 "unsupported parent " + HandleToString(file.parent) +
                     (file.rsa_parent ? " with rsaParent (the H-1 RSA storage primary)" : "") +
                     " (supported: the ECC storage primary of 0x40000001, or a persistent "
                     "parent 0x81xxxxxx)");
  }
  AuthLatch::Global();  // made now, so workers forked after the key is opened share it
  auto key = std::shared_ptr<WorkloadKey>(new WorkloadKey());
  key->ctx_ = std::move(ctx);
  key->public_area_ = area;
  WIMSE_ASSIGN_OR_RETURN(key->alg_, KeyAlgOfTpmPublic(area));
  WIMSE_ASSIGN_OR_RETURN(key->public_key_, PublicKeyFromTpmPublic(area));
  WIMSE_ASSIGN_OR_RETURN(key->name_, TpmName(area));
  key->label_ = NameLabel(key->name_);
  key->file_ = std::move(file);
  return key;
}

Result<std::shared_ptr<WorkloadKey>> WorkloadKey::Open(std::shared_ptr<TpmContext> ctx,
                                                       const std::string& path) {
  WIMSE_ASSIGN_OR_RETURN(Tss2KeyFile file, ReadTss2KeyFile(path));
  auto key = FromKeyFile(std::move(ctx), std::move(file));
  if (!key.ok()) return key.error().WithContext(path);
  (*key)->label_ = path;
  return key;
}

Result<std::shared_ptr<WorkloadKey>> WorkloadKey::Create(std::shared_ptr<TpmContext> ctx,
                                                         KeyAlg alg) {
  return Create(std::move(ctx), alg, SecretBytes());
}

Result<std::shared_ptr<WorkloadKey>> WorkloadKey::Create(std::shared_ptr<TpmContext> ctx,
                                                         KeyAlg alg, const SecretBytes& auth) {
  WIMSE_ASSIGN_OR_RETURN(TPM2B_PUBLIC in_public, WorkloadKeyTemplate(alg));
  TPM2B_SENSITIVE_CREATE sensitive{};
  WIMSE_RETURN_IF_ERROR(CheckAuthValueSize(auth.size()));
  sensitive.sensitive.userAuth.size = static_cast<UINT16>(auth.size());
  std::copy(auth.view().begin(), auth.view().end(), sensitive.sensitive.userAuth.buffer);
  KeyCreation creation;  // creationData/Hash/Ticket, for TPM2_CertifyCreation later
  auto created = ctx->Run([&](ESYS_CONTEXT* esys) -> Result<Tss2KeyFile> {
    ESYS_TR session = ESYS_TR_PASSWORD;
    if (!auth.empty()) {
      // The auth value travels in inSensitive: encrypt it (decrypt attribute) in the salted
      // session; the response's outPrivate is a sized buffer, so encrypt it too.
      WIMSE_ASSIGN_OR_RETURN(session, ctx->SecureSessionLocked(esys));
      SetSecureAttributes(esys, session, /*encrypt_response=*/true);
    }
    WIMSE_ASSIGN_OR_RETURN(TpmHandle srk, ctx->LoadStoragePrimaryLocked(esys));
    TPM2B_DATA outside{};
    TPML_PCR_SELECTION pcrs{};
    TPM2B_PRIVATE* out_private = nullptr;
    TPM2B_PUBLIC* out_public = nullptr;
    TPM2B_CREATION_DATA* creation_data = nullptr;
    TPM2B_DIGEST* creation_hash = nullptr;
    TPMT_TK_CREATION* creation_ticket = nullptr;
    TSS2_RC rc = Esys_Create(esys, srk.get(), session, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive,
                             &in_public, &outside, &pcrs, &out_private, &out_public, &creation_data,
                             &creation_hash, &creation_ticket);
    std::unique_ptr<TPM2B_CREATION_DATA, void (*)(void*)> cd_owner(creation_data, Esys_Free);
    std::unique_ptr<TPM2B_DIGEST, void (*)(void*)> ch_owner(creation_hash, Esys_Free);
    std::unique_ptr<TPMT_TK_CREATION, void (*)(void*)> ct_owner(creation_ticket, Esys_Free);
    if (rc != TSS2_RC_SUCCESS) {
      if (session != ESYS_TR_PASSWORD) ctx->DropSecureSessionLocked(esys);
      return TpmError("TPM2_Create (workload key)", rc);
    }
    std::unique_ptr<TPM2B_PRIVATE, void (*)(void*)> priv_owner(out_private, Esys_Free);
    std::unique_ptr<TPM2B_PUBLIC, void (*)(void*)> pub_owner(out_public, Esys_Free);
    Tss2KeyFile file;
    file.empty_auth = auth.empty();
    // Always write the field, FALSE included. tpm2-openssl up to 1.2.0 and tpm2-tss-engine read
    // an absent emptyAuth as TRUE (their ASN1_BOOLEAN is -1 when absent and they test for
    // non-zero): they never ask for the pass phrase and sign with empty auth, which the TPM
    // refuses with TPM_RC_AUTH_FAIL and a dictionary-attack strike.
    file.empty_auth_present = true;
    file.parent = kOwnerHierarchyParent;
    WIMSE_ASSIGN_OR_RETURN(file.public_blob, MarshalTpm2bPublic(*out_public));
    WIMSE_ASSIGN_OR_RETURN(file.private_blob, MarshalPrivate(*out_private));
    if (creation_data != nullptr && creation_hash != nullptr && creation_ticket != nullptr) {
      WIMSE_ASSIGN_OR_RETURN(creation,
                             MarshalKeyCreation(*creation_data, *creation_hash, *creation_ticket));
    }
    return file;
  });
  OPENSSL_cleanse(&sensitive, sizeof(sensitive));
  if (!created.ok()) return std::move(created).error();
  WIMSE_ASSIGN_OR_RETURN(auto key, FromKeyFile(std::move(ctx), std::move(created).value()));
  if (!auth.empty()) key->SetAuth(SecretBytes(auth.view()));
  if (!creation.creation_data.empty()) key->creation_ = std::move(creation);
  return key;
}

Result<std::shared_ptr<WorkloadKey>> WorkloadKey::OpenPersistent(std::shared_ptr<TpmContext> ctx,
                                                                 uint32_t handle) {
  if ((handle >> 24) != TPM2_HT_PERSISTENT) {
    return Error(Layer::kUsage,
                 HandleToString(handle) + " is not a persistent handle (0x81xxxxxx)");
  }
  AuthLatch::Global();  // made now, so workers forked after the key is opened share it
  auto area = ctx->Run([&](ESYS_CONTEXT* esys) -> Result<TPMT_PUBLIC> {
    WIMSE_ASSIGN_OR_RETURN(ESYS_TR tr, ctx->PersistentObjectLocked(esys, handle));
    TPM2B_PUBLIC* pub = nullptr;
    TSS2_RC rc =
        Esys_ReadPublic(esys, tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, nullptr, nullptr);
    if (rc != TSS2_RC_SUCCESS) {
      ctx->ForgetPersistentLocked(esys, handle);
      return TpmError(("TPM2_ReadPublic of " + HandleToString(handle)).c_str(), rc);
    }
    TPMT_PUBLIC out = pub->publicArea;
    Esys_Free(pub);
    return out;
  });
  if (!area.ok()) return std::move(area).error();
  const TPMT_PUBLIC& a = *area;
  std::string label = std::string(kHandleUriScheme) + HandleToString(handle);
  if ((a.objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT) == 0) {
    return Error(Layer::kPolicy, label + ": the object is not a signing key");
  }
  if ((a.objectAttributes & TPMA_OBJECT_RESTRICTED) != 0) {
    return Error(Layer::kPolicy, label +
                                     ": the key is restricted (an attestation key); it "
                                     "cannot sign arbitrary digests");
  }
  if ((a.objectAttributes & TPMA_OBJECT_USERWITHAUTH) == 0) {
    return Error(Layer::kPolicy, label + ": " + kPolicyOnlyKey);
  }
  auto key = std::shared_ptr<WorkloadKey>(new WorkloadKey());
  key->ctx_ = std::move(ctx);
  key->public_area_ = a;
  auto alg = KeyAlgOfTpmPublic(a);
  if (!alg.ok()) return alg.error().WithContext(label);
  key->alg_ = *alg;
  WIMSE_ASSIGN_OR_RETURN(key->public_key_, PublicKeyFromTpmPublic(a));
  WIMSE_ASSIGN_OR_RETURN(key->name_, TpmName(a));
  // No key file: keep the public area so key_file().public_blob is meaningful to callers.
  TPM2B_PUBLIC pub2b{};
  pub2b.publicArea = a;
  WIMSE_ASSIGN_OR_RETURN(key->file_.public_blob, MarshalTpm2bPublic(pub2b));
  key->file_.empty_auth = true;  // unknown for persistent objects: empty unless SetAuth
  key->file_.parent = TPM2_RH_OWNER;
  key->persistent_handle_ = handle;
  key->label_ = std::move(label);
  return key;
}

void WorkloadKey::SetAuth(SecretBytes auth) {
  auth_ = std::make_shared<SecretBytes>(std::move(auth));
  auth_accepted_.store(false);  // a new value gets its one try (unless the latch has it)
}

namespace {
void PutU32(Bytes& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}
}  // namespace

AuthLatch::Fingerprint WorkloadKey::AuthFingerprint() const {
  // What is authorized: the key (Name), its wrapping (the private blob: TPM2_ObjectChangeAuth
  // keeps the Name but gives a new blob with a new auth value) and, for persistent keys, the
  // handle.
  Bytes object = name_;
  PutU32(object, persistent_handle_);
  object.insert(object.end(), file_.private_blob.begin(), file_.private_blob.end());
  ByteView auth = auth_ ? auth_->view() : ByteView();
  return AuthLatch::Global().Of("key", object, auth);
}

AuthLatch::Fingerprint WorkloadKey::ParentFingerprint() const {
  Bytes object;
  PutU32(object, file_.parent);
  object.insert(object.end(), file_.public_blob.begin(), file_.public_blob.end());
  object.insert(object.end(), file_.private_blob.begin(), file_.private_blob.end());
  return AuthLatch::Global().Of("parent", object, ByteView());
}

Result<std::shared_ptr<WorkloadKey>> WorkloadKey::Persist(uint32_t handle) const {
  if ((handle >> 24) != TPM2_HT_PERSISTENT) {
    return Error(Layer::kUsage,
                 HandleToString(handle) + " is not a persistent handle (0x81xxxxxx)");
  }
  if (persistent_handle_ != 0) {
    return Error(Layer::kUsage, label_ + " is already persistent");
  }
  Status s = ctx_->Run([&](ESYS_CONTEXT* esys) -> Status {
    WIMSE_ASSIGN_OR_RETURN(ESYS_TR key_tr, LoadLocked(esys));
    ESYS_TR out = ESYS_TR_NONE;
    TSS2_RC rc = Esys_EvictControl(esys, ESYS_TR_RH_OWNER, key_tr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                   ESYS_TR_NONE, handle, &out);
    if (IsTpmLayer(rc) && (rc & 0xfff) == TPM2_RC_NV_DEFINED) {
      return Error(Layer::kTpm,
                   "TPM2_EvictControl: handle " + HandleToString(handle) +
                       " is already in use (evict it first)",
                   rc);
    }
    if (rc != TSS2_RC_SUCCESS) {
      return TpmError(("TPM2_EvictControl to " + HandleToString(handle)).c_str(), rc);
    }
    Esys_TR_Close(esys, &out);
    return OkStatus();
  });
  if (!s.ok()) return std::move(s).error().WithContext(label_);
  WIMSE_ASSIGN_OR_RETURN(auto key, OpenPersistent(ctx_, handle));
  key->auth_ = auth_;
  key->auth_accepted_.store(auth_accepted_.load());
  return key;
}

Status WorkloadKey::EvictPersistent(std::shared_ptr<TpmContext> ctx, uint32_t handle,
                                    bool any_object) {
  if ((handle >> 24) != TPM2_HT_PERSISTENT) {
    return Error(Layer::kUsage,
                 HandleToString(handle) + " is not a persistent handle (0x81xxxxxx)");
  }
  return ctx->Run([&](ESYS_CONTEXT* esys) -> Status {
    WIMSE_ASSIGN_OR_RETURN(ESYS_TR tr, ctx->PersistentObjectLocked(esys, handle));
    if (!any_object) {
      TPM2B_PUBLIC* pub = nullptr;
      TSS2_RC rrc = Esys_ReadPublic(esys, tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub,
                                    nullptr, nullptr);
      if (rrc != TSS2_RC_SUCCESS) {
        return TpmError(("TPM2_ReadPublic (" + HandleToString(handle) + ")").c_str(), rrc);
      }
      TPMA_OBJECT attrs = pub->publicArea.objectAttributes;
      Esys_Free(pub);
      bool restricted = (attrs & TPMA_OBJECT_RESTRICTED) != 0;
      bool decrypt = (attrs & TPMA_OBJECT_DECRYPT) != 0;
      bool sign = (attrs & TPMA_OBJECT_SIGN_ENCRYPT) != 0;
      if (restricted || decrypt || !sign) {
        const char* what = restricted && decrypt
                               ? "a restricted decryption key (an EK or a storage key)"
                           : restricted ? "a restricted signing key (an attestation key)"
                           : decrypt    ? "a decryption key"
                                        : "an object that is not a signing key";
        return Error(Layer::kUsage, HandleToString(handle) + " holds " + what +
                                        ", not a workload key: refusing to evict it (--force "
                                        "removes any persistent object)");
      }
    }
    ESYS_TR out = ESYS_TR_NONE;
    TSS2_RC rc = Esys_EvictControl(esys, ESYS_TR_RH_OWNER, tr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                   ESYS_TR_NONE, handle, &out);
    if (rc != TSS2_RC_SUCCESS) {
      return TpmError(("TPM2_EvictControl (remove " + HandleToString(handle) + ")").c_str(), rc);
    }
    // On removal ESAPI closes the object's TR itself; forget ours without touching it again.
    ctx->ForgetPersistentLocked(esys, handle);
    return OkStatus();
  });
}

Result<ESYS_TR> WorkloadKey::LoadLocked(ESYS_CONTEXT* esys) const {
  if (persistent_handle_ != 0) {
    WIMSE_ASSIGN_OR_RETURN(ESYS_TR tr, ctx_->PersistentObjectLocked(esys, persistent_handle_));
    // The handle is re-read on every new connection: someone may have evicted our key and
    // made another object persistent at the same handle. Never sign with it.
    TPM2B_NAME* name = nullptr;
    TSS2_RC rc = Esys_TR_GetName(esys, tr, &name);
    bool same = rc == TSS2_RC_SUCCESS && name != nullptr && name->size == name_.size() &&
                std::equal(name_.begin(), name_.end(), name->name);
    Esys_Free(name);
    if (!same) {
      ctx_->ForgetPersistentLocked(esys, persistent_handle_);
      return Error(Layer::kPolicy, "the object at persistent handle " +
                                       HandleToString(persistent_handle_) +
                                       " is no longer this key (its Name changed: evicted and "
                                       "replaced by another object)");
    }
    return tr;
  }
  return ctx_->CachedObjectLocked(esys, file_.public_blob, [&](ESYS_CONTEXT* e) -> Result<ESYS_TR> {
    WIMSE_ASSIGN_OR_RETURN(TPM2B_PUBLIC pub, UnmarshalTpm2bPublic(file_.public_blob));
    WIMSE_ASSIGN_OR_RETURN(TPM2B_PRIVATE priv, UnmarshalPrivate(file_.private_blob));
    TpmHandle srk;
    ESYS_TR parent = ESYS_TR_NONE;
    if ((file_.parent >> 24) == TPM2_HT_PERSISTENT) {
      auto p = ctx_->PersistentObjectLocked(e, file_.parent);
      if (!p.ok()) return p.error().WithContext("parent of " + label_);
      parent = *p;
    } else {
      WIMSE_ASSIGN_OR_RETURN(srk, ctx_->LoadStoragePrimaryLocked(e));
      parent = srk.get();
    }
    // A parent that refused the empty auth value once is not asked again (each refusal may
    // be a dictionary-attack strike), in this process or its forked workers.
    if (uint32_t refused = AuthLatch::Global().Rejected(ParentFingerprint()); refused != 0) {
      return ParentAuthError(refused);
    }
    ESYS_TR tr = ESYS_TR_NONE;
    TSS2_RC rc =
        Esys_Load(e, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &priv, &pub, &tr);
    if (IsAuthFailure(rc)) {
      AuthLatch::Global().RecordRejected(ParentFingerprint(), rc, LockoutInterval(e));
      return Error(Layer::kTpm, ParentAuthError(rc).message(), rc);
    }
    if (IsLockout(rc)) {
      return Error(Layer::kTpm,
                   "TPM2_Load (" + label_ +
                       "): the TPM is in dictionary-attack lockout "
                       "(TPM_RC_LOCKOUT) and refuses to authorize the parent " +
                       HandleToString(file_.parent),
                   rc);
    }
    if (rc == TPM2_RC_OBJECT_MEMORY) {
      return ctx_->ObjectSlotErrorLocked(e, "TPM2_Load (" + label_ + ")", rc,
                                         srk.get() != ESYS_TR_NONE ? 1 : 0);
    }
    if (IsFmt1(rc, TPM2_RC_SIZE)) {
      // The TPM could not even unmarshal the private blob: damage, not another TPM.
      return Error(Layer::kTpm,
                   "TPM2_Load: " + label_ +
                       " is damaged (the TPM cannot parse its private "
                       "part)",
                   rc);
    }
    if (IsFmt1(rc, TPM2_RC_INTEGRITY) || IsFmt1(rc, TPM2_RC_BINDING)) {
      // The private blob was wrapped by another TPM or parent (or altered: the integrity
      // HMAC cannot tell the two apart).
      return Error(Layer::kTpm,
                   "TPM2_Load: " + label_ +
                       " does not belong to this TPM (its private part "
                       "was wrapped by another TPM or parent " +
                       HandleToString(file_.parent) + ", or was altered)",
                   rc);
    }
    if (rc != TSS2_RC_SUCCESS) return TpmError(("TPM2_Load (" + label_ + ")").c_str(), rc);
    return tr;
  });
}

namespace {
// How a user gives an auth value, in the CLI and in OpenSSL programs (the provider shares
// these errors).
constexpr char kAuthOptions[] =
    "wimse-tpm: --auth-file, --auth-env or --auth-prompt; openssl: -passin, or -pass for "
    "s_client and s_server";
}  // namespace

Error WorkloadKey::MissingAuthError() const {
  // emptyAuth absent: the file says the key has an auth value. Trying empty auth would cost a
  // dictionary-attack strike; refuse before the TPM sees anything. (An explicit FALSE is
  // ambiguous, tpm2-tools #3458: there empty auth is tried once, see AuthorizationError.)
  return Error(Layer::kUsage, KeyNoun() +
                                  " needs an auth value (its key file has no emptyAuth field); "
                                  "give it (" +
                                  std::string(kAuthOptions) +
                                  "; nothing was sent to the TPM: no "
                                  "dictionary-attack strike)");
}

namespace {
// An earlier response code named in the text of an error that carries none of its own.
std::string RcText(uint32_t rc) {
  char code[16];
  std::snprintf(code, sizeof(code), "0x%x", rc);
  return code;
}
}  // namespace

Error WorkloadKey::ParentAuthError(uint32_t rc) const {
  return Error(Layer::kTpm,
               "TPM2_Load (" + label_ + "): the parent " + HandleToString(file_.parent) +
                   " refused an empty auth value (" + RcText(rc) +
                   ", TPM_RC_AUTH_FAIL): the parent has an auth value, and wimse-tpm loads keys "
                   "only under parents without one (the storage primary of 0x40000001, or a "
                   "persistent parent with an empty auth value); not retried by this process or "
                   "its workers: each refusal may count toward the TPM's dictionary-attack "
                   "lockout");
}

Error WorkloadKey::RejectedAuthError(uint32_t earlier_rc) const {
  // No response code attached: this refusal sent nothing, and a decoded "DA counter
  // incremented" would read as another strike. The earlier answer is named in the text.
  return Error(Layer::kTpm,
               KeyNoun() + ": auth value was rejected by the TPM earlier (" + RcText(earlier_rc) +
                   ", TPM_RC_AUTH_FAIL); not retried to protect the dictionary-attack counter; "
                   "give the correct auth value (" +
                   kAuthOptions + "; nothing was sent to the TPM)");
}

Status WorkloadKey::CheckAuthUsable() const {
  if (!auth_ && auth_required_by_file()) {
    return MissingAuthError();
  }
  if (auth_) {
    Status size = CheckAuthValueSize(auth_->size());
    if (!size.ok()) {
      return std::move(size).error().WithContext(KeyNoun());
    }
  }
  // This key object, another one for the same key and value, or another process of the tree
  // may have been refused already (until the TPM has accepted the value once).
  if (uint32_t rc = RejectedRc(); rc != 0) {
    return RejectedAuthError(rc);
  }
  return OkStatus();
}

uint32_t WorkloadKey::RejectedRc() const {
  if (auth_accepted_.load(std::memory_order_acquire)) return 0;
  return AuthLatch::Global().Rejected(AuthFingerprint());
}

Error WorkloadKey::AuthorizationError(const char* what, TSS2_RC rc,
                                      std::chrono::seconds forgive_after) const {
  bool secure = auth_ && !auth_->empty();
  if (IsAuthFailure(rc)) {
    // Whatever the caller does next (a TLS server retries on every handshake), this auth value
    // gets no second try: CheckAuthUsable refuses until SetAuth or the TPM has forgiven it.
    AuthLatch::Global().RecordRejected(AuthFingerprint(), rc, forgive_after);
    std::string hint =
        secure ? " (wrong auth value; not retried: every failure counts toward the "
                 "TPM's dictionary-attack lockout)"
               : (file_.empty_auth ? " (no auth value was given; if the key has one, give it: " +
                                         std::string(kAuthOptions) + ")"
                                   : " (the key file says the key needs an auth value; empty "
                                     "auth was tried once; give one: " +
                                         std::string(kAuthOptions) + ")");
    return Error(
        Layer::kTpm,
        std::string(what) + ": authorization failed for " + KeyNoun() + ": TPM_RC_AUTH_FAIL" + hint,
        rc);
  }
  if (IsLockout(rc)) {
    return Error(Layer::kTpm,
                 "the TPM is in dictionary-attack lockout (TPM_RC_LOCKOUT) and refuses "
                 "authorization for " +
                     KeyNoun() + " until the lockout recovery time passes or the lockout is reset",
                 rc);
  }
  return TpmError((std::string(what) + " (" + label_ + ")").c_str(), rc);
}

Result<ESYS_TR> WorkloadKey::AuthorizeLocked(ESYS_CONTEXT* esys, ESYS_TR tr,
                                             bool encrypt_response) const {
  WIMSE_RETURN_IF_ERROR(CheckAuthUsable());
  const SecretBytes* auth = auth_ ? auth_.get() : nullptr;
  SetTrAuth(esys, tr, auth);
  if (auth == nullptr || auth->empty()) {
    return ESYS_TR_PASSWORD;
  }
  WIMSE_ASSIGN_OR_RETURN(ESYS_TR session, ctx_->SecureSessionLocked(esys));
  SetSecureAttributes(esys, session, encrypt_response);
  return session;
}

Result<Bytes> WorkloadKey::SignLocked(ESYS_CONTEXT* esys, const TPM2B_DIGEST& digest,
                                      const TPMT_SIG_SCHEME& scheme) const {
  // Checked again under the context lock: of several threads signing with a wrong auth value,
  // only the first reaches the TPM.
  WIMSE_RETURN_IF_ERROR(CheckAuthUsable());
  TPMT_TK_HASHCHECK validation{};
  validation.tag = TPM2_ST_HASHCHECK;
  validation.hierarchy = TPM2_RH_NULL;
  validation.digest.size = 0;
  const SecretBytes* auth = auth_ ? auth_.get() : nullptr;
  bool secure = auth != nullptr && !auth->empty();
  TPMT_SIGNATURE* sig = nullptr;
  TPMT_SIGNATURE secure_sig{};
  TSS2_RC rc = TSS2_RC_SUCCESS;
  ESYS_TR key = ESYS_TR_NONE;
  for (int attempt = 0; attempt < 2; ++attempt) {
    WIMSE_ASSIGN_OR_RETURN(key, LoadLocked(esys));
    if (secure) {
      // Our own salted HMAC session (tpm/hmac_session.h): the digest is encrypted on the bus,
      // the auth value never leaves this process, and the response HMAC is verified.
      TPM2_HANDLE key_handle = 0;
      TSS2_RC hrc = Esys_TR_GetTpmHandle(esys, key, &key_handle);
      if (hrc != TSS2_RC_SUCCESS) {
        return Error(Layer::kInternal, "Esys_TR_GetTpmHandle (" + label_ + ")", hrc);
      }
      auto session = ctx_->HmacSessionLocked(esys);
      if (!session.ok()) return session.error().WithContext(label_);
      Result<TPMT_SIGNATURE> signed_secure =
          (*session)->Sign(esys, key_handle, name_, auth->view(), digest, scheme);
      if (signed_secure.ok()) {
        secure_sig = *signed_secure;
        rc = TSS2_RC_SUCCESS;
      } else {
        ctx_->DropHmacSessionLocked(esys);  // the TPM may have discarded it; nonces are spent
        rc = signed_secure.error().tss2_rc();
        // Not a TPM response code (response HMAC mismatch, OpenSSL, marshalling): fail closed.
        if (rc == TSS2_RC_SUCCESS) return signed_secure.error().WithContext(label_);
      }
    } else {
      SetTrAuth(esys, key, auth);
      rc = Esys_Sign(esys, key, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &digest, &scheme,
                     &validation, &sig);
    }
    // A stale cached handle (TPM restarted or object flushed by someone else): reload once.
    // Never for authorization failures: those count toward the dictionary-attack lockout.
    if (IsStaleHandle(rc) && attempt == 0) {
      ctx_->FlushCacheLocked(esys);
      if (persistent_handle_ != 0) ctx_->ForgetPersistentLocked(esys, persistent_handle_);
      continue;
    }
    break;
  }
  if (rc != TSS2_RC_SUCCESS) {
    // After an authorization failure, how long until the TPM forgives the strike.
    std::chrono::seconds forgive =
        IsAuthFailure(rc) ? LockoutInterval(esys) : std::chrono::seconds(0);
    return AuthorizationError("TPM2_Sign", rc, forgive);
  }
  std::unique_ptr<TPMT_SIGNATURE, void (*)(void*)> owner(sig, Esys_Free);
  if (secure) sig = &secure_sig;
  if (sig->sigAlg == TPM2_ALG_ECDSA) {
    const TPMS_SIGNATURE_ECC& ecc = sig->signature.ecdsa;
    return EcdsaRsToRaw(ByteView(ecc.signatureR.buffer, ecc.signatureR.size),
                        ByteView(ecc.signatureS.buffer, ecc.signatureS.size), CurveFieldSize(alg_));
  }
  if (sig->sigAlg == TPM2_ALG_RSASSA || sig->sigAlg == TPM2_ALG_RSAPSS) {
    const TPM2B_PUBLIC_KEY_RSA& s =
        sig->sigAlg == TPM2_ALG_RSASSA ? sig->signature.rsassa.sig : sig->signature.rsapss.sig;
    return Bytes(s.buffer, s.buffer + s.size);
  }
  return Error(Layer::kTpm, "TPM2_Sign returned an unexpected signature algorithm");
}

Result<Bytes> WorkloadKey::SignDigest(HashAlg hash, ByteView digest) const {
  return SignDigestRsa(hash, digest, RsaScheme::kPkcs1v15);
}

Result<Bytes> WorkloadKey::SignDigestRsa(HashAlg hash, ByteView digest, RsaScheme scheme) const {
  if (digest.size() != HashSize(hash)) {
    return Error(Layer::kUsage, "digest is " + std::to_string(digest.size()) + " bytes; " +
                                    HashName(hash) + " needs " + std::to_string(HashSize(hash)));
  }
  WIMSE_RETURN_IF_ERROR(CheckAuthUsable());
  TPM2B_DIGEST in{};
  in.size = static_cast<UINT16>(digest.size());
  std::copy(digest.begin(), digest.end(), in.buffer);
  TPMT_SIG_SCHEME sig_scheme{};
  bool pss = false;
  if (public_area_.type == TPM2_ALG_ECC) {
    sig_scheme.scheme = TPM2_ALG_ECDSA;
    sig_scheme.details.ecdsa.hashAlg = TpmAlgFromHash(hash);
  } else if (scheme == RsaScheme::kPss) {
    pss = true;
    sig_scheme.scheme = TPM2_ALG_RSAPSS;
    sig_scheme.details.rsapss.hashAlg = TpmAlgFromHash(hash);
  } else {
    sig_scheme.scheme = TPM2_ALG_RSASSA;
    sig_scheme.details.rsassa.hashAlg = TpmAlgFromHash(hash);
  }
  // Until the TPM has accepted this auth value once, the first attempt is claimed in the
  // process tree's AuthLatch: concurrent first attempts by forked workers wait for its answer
  // (outside the context lock and the TPM connection) instead of each risking a strike.
  std::optional<AuthLatch::Fingerprint> claim;
  if (!auth_accepted_.load(std::memory_order_acquire)) {
    claim = AuthFingerprint();
    int wait_ms = SwtpmResponseTimeoutMilliseconds();
    switch (AuthLatch::Global().BeginFirstTry(*claim, std::chrono::milliseconds(wait_ms))) {
      case AuthLatch::Claim::kMine:
        break;
      case AuthLatch::Claim::kRejected:
        return RejectedAuthError(AuthLatch::Global().Rejected(*claim));
      case AuthLatch::Claim::kTimedOut:
        return Error(Layer::kTpm, KeyNoun() +
                                      ": another process has been making the first TPM attempt "
                                      "with this key's auth value for more than " +
                                      std::to_string(wait_ms / 1000) +
                                      " s; not trying in parallel (nothing was sent to the TPM)");
    }
  }
  auto sig = ctx_->Run(
      [&](ESYS_CONTEXT* esys) -> Result<Bytes> { return SignLocked(esys, in, sig_scheme); });
  if (claim) {
    if (sig.ok()) auth_accepted_.store(true, std::memory_order_release);
    // After an authorization failure the entry is already 'rejected' (AuthorizationError) and
    // stays; any other outcome frees it for the next process.
    AuthLatch::Global().EndFirstTry(*claim);
  }
  if (!sig.ok() || !pss) return sig;
  // TPM2_Sign has no salt-length parameter; refuse anything but salt = digest length.
  Status salt = CheckRsaPssSaltIsDigestLength(public_key_.get(), hash, digest, *sig);
  if (!salt.ok()) return salt.error().WithContext(label_);
  return sig;
}

Result<std::shared_ptr<WorkloadKey>> OpenKey(std::shared_ptr<TpmContext> ctx,
                                             const std::string& ref) {
  WIMSE_ASSIGN_OR_RETURN(KeyRef parsed, ParseKeyRef(ref));
  if (parsed.kind == KeyRef::Kind::kPersistentHandle) {
    return WorkloadKey::OpenPersistent(std::move(ctx), parsed.handle);
  }
  return WorkloadKey::Open(std::move(ctx), parsed.path);
}

Result<std::unique_ptr<TpmSigner>> OpenTpmSigner(const std::string& tcti,
                                                 const std::string& key_path) {
  WIMSE_ASSIGN_OR_RETURN(auto key, OpenKey(SharedContext(ResolveTcti(tcti)), key_path));
  return std::make_unique<TpmSigner>(std::move(key));
}

}  // namespace wimse::tpm
