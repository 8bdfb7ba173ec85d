// TpmContext: the one connection to the TPM per process (CONVENTIONS rule 8).
//
// Owns the TCTI and ESYS_CONTEXT, a mutex that serialises every ESAPI call sequence (ESYS is
// not thread-safe), lazy connection, and reconnection after fork(): a child that finds a pid
// different from the one that connected drops the inherited context without touching the TPM
// and opens its own.
//
// Object slots: a direct swtpm TCTI has 3 transient slots and no resource manager. The context
// keeps the storage primary (SRK) as a saved context (no slot) and loads it only for the
// TPM2_Load of a child; loaded workload keys are cached (bounded, least recently used first
// out) and flushed on eviction, so callers never see slot exhaustion.
//
// Other clients of the same TPM: on a swtpm TCTI (our persistent transport, src/tpm/tcti.h)
// the context holds its keys and sessions only while it holds the connection. When the
// connection has been idle for WIMSE_SWTPM_IDLE_MS, the context flushes its cached objects and
// sessions, then the transport closes the connection. swtpm serves one connection at a time, so
// the next client (another process, or another context of this one) finds every slot that we
// used free, however many processes share the TPM; a burst of commands keeps everything loaded.
// A released key is saved first (TPM2_ContextSave, while idle), so the next operation after a
// release reloads it with one TPM2_ContextLoad; keys with an auth value also start a new
// salted session.
#ifndef WIMSE_TPM_CONTEXT_H_
#define WIMSE_TPM_CONTEXT_H_

#include <tss2/tss2_esys.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "tpm/tcti.h"
#include "util/bytes.h"
#include "util/result.h"

namespace wimse::tpm {

class HmacSession;

// Resolves the TCTI string: `flag` if non-empty, else $WIMSE_TPM_TCTI, else device:/dev/tpmrm0.
std::string ResolveTcti(const std::string& flag);

// Error for a failed ESAPI call: Layer::kTpm with the decoded response code, or Layer::kTcti
// when the response code comes from the TCTI layer.
Error TpmError(const char* command, TSS2_RC rc);

// An ESYS_TR with an owner (CONVENTIONS rule 6). Transient objects and sessions are flushed,
// persistent/NV handles closed, when the owner dies. Move-only.
class TpmHandle {
 public:
  enum class Release { kFlush, kClose };
  TpmHandle() = default;
  TpmHandle(ESYS_CONTEXT* ctx, ESYS_TR tr, Release release)
      : ctx_(ctx), tr_(tr), release_(release) {}
  TpmHandle(TpmHandle&& o) noexcept { *this = std::move(o); }
  TpmHandle& operator=(TpmHandle&& o) noexcept;
  TpmHandle(const TpmHandle&) = delete;
  TpmHandle& operator=(const TpmHandle&) = delete;
  ~TpmHandle() { Reset(); }

  ESYS_TR get() const { return tr_; }
  bool valid() const { return tr_ != ESYS_TR_NONE; }
  // Gives up ownership without flushing (the caller now owns the TPM object).
  ESYS_TR ReleaseOwnership() {
    ESYS_TR t = tr_;
    tr_ = ESYS_TR_NONE;
    return t;
  }
  // Flushes/closes now.
  void Reset();

 private:
  ESYS_CONTEXT* ctx_ = nullptr;
  ESYS_TR tr_ = ESYS_TR_NONE;
  Release release_ = Release::kFlush;
};

class TpmContext {
 public:
  // Creates a context for `tcti` (already resolved with ResolveTcti). Does not connect: the
  // first Run() does, so a process that never uses the TPM never touches it.
  explicit TpmContext(std::string tcti);
  ~TpmContext();
  TpmContext(const TpmContext&) = delete;
  TpmContext& operator=(const TpmContext&) = delete;

  // Connects now (if not yet) and checks the TPM answers. A TPM that cannot be reached is one
  // error naming the TCTI and the decoded response code.
  Status Connect();

  // Counters of the swtpm transport under this context (src/tpm/tcti.h); all zero for other
  // TCTIs or before the first connection. Takes the lock.
  TransportStats transport_stats();

  const std::string& tcti() const { return tcti_; }

  // Runs `fn(esys)` under the context lock after (re)connecting. Everything that calls ESAPI
  // goes through here. `fn` must not call Run() again (the lock is not recursive), and must not
  // fork() (the fork handlers take every context's lock).
  template <typename F>
  auto Run(F&& fn) -> decltype(fn(static_cast<ESYS_CONTEXT*>(nullptr))) {
    std::lock_guard<std::mutex> lock(mu_);
    Status s = EnsureConnectedLocked();
    if (!s.ok()) return std::move(s).error();
    BeginRunLocked();
    auto result = fn(esys_);
    EndRunLocked();
    return result;
  }

  // How many times the context released its objects and sessions to other clients after the
  // connection went idle (see above). For tests and diagnostics. Takes the lock.
  uint64_t idle_releases();

  // Within Run(): loads the storage primary for parent 0x40000001 (TCG H-2 ECC P-256 SRK, the
  // template tpm2-openssl and tpm2-tss-engine use). The first call per connection creates it
  // (TPM2_CreatePrimary) and saves its context; later calls ContextLoad it. The returned handle
  // flushes the loaded copy. Uses one transient slot while held.
  Result<TpmHandle> LoadStoragePrimaryLocked(ESYS_CONTEXT* esys);

  // Within Run(): returns a loaded ESYS_TR for the key object identified by `cache_key` (its
  // marshalled TPM2B_PUBLIC), loading it with `load` (given the esys context) if it is not in
  // the cache. The cache holds at most kMaxLoadedKeys objects; the least recently used one is
  // flushed to make room. The returned ESYS_TR stays valid until the next call that may evict,
  // i.e. use it within the same Run().
  Result<ESYS_TR> CachedObjectLocked(ESYS_CONTEXT* esys, ByteView cache_key,
                                     const std::function<Result<ESYS_TR>(ESYS_CONTEXT*)>& load);

  // Within Run(): flushes every cached object (for example before an operation that needs all
  // slots, or in tests before counting handles). Does not touch the cached session.
  void FlushCacheLocked(ESYS_CONTEXT* esys);

  // Within Run(): the error for `command` failing with TPM_RC_OBJECT_MEMORY after our own cache
  // was flushed. Counts the transient objects in the TPM (one TPM2_GetCapability) and says what
  // to do: on a TPM without a resource manager, objects of a process that was killed stay
  // loaded until someone flushes them (`tpm2_flushcontext -t`, or a resource manager such as
  // /dev/tpmrm0 or tpm2-abrmd, which flushes them itself). Never flushes anything: an object we
  // did not load may belong to a tool that refers to it by handle.
  // `held`: objects the caller has loaded outside the cache (e.g. the SRK during TPM2_Load).
  Error ObjectSlotErrorLocked(ESYS_CONTEXT* esys, const std::string& command, TSS2_RC rc,
                              size_t held = 0);

  // Flushes cached objects and the cached sessions (takes the lock).
  void FlushCache();
  // Like FlushCache, but returns at once if another thread holds the lock (used at exit).
  void FlushCacheIfIdle();

  // Within Run(): the context's salted HMAC session for commands that carry an auth value or a
  // secret (CONVENTIONS rule 8): salted with the storage primary's public key (ECDH), bound to
  // nothing, SHA-256, AES-128-CFB parameter encryption. It is started once and kept (the caller
  // sets continueSession), so salting and StartAuthSession cost one command per connection,
  // not per operation. Uses one TPM session slot (not an object slot) while the context lives;
  // the SRK is context-loaded for StartAuthSession and flushed. Callers set the per-command
  // attributes with Esys_TRSess_SetAttributes and must call DropSecureSessionLocked() when a
  // command that used it fails (the TPM may have discarded it).
  Result<ESYS_TR> SecureSessionLocked(ESYS_CONTEXT* esys);
  // Within Run(): flushes the cached secure session (next SecureSessionLocked starts another).
  void DropSecureSessionLocked(ESYS_CONTEXT* esys);

  // Within Run(): the context's own salted HMAC session (tpm/hmac_session.h) for TPM2_Sign of
  // keys with an auth value: the same protection as SecureSessionLocked (salted to the SRK,
  // unbound, SHA-256, AES-128-CFB), but its session key is known to our code, so the per-command
  // arithmetic runs on pre-fetched OpenSSL objects instead of tpm2-tss's. Started once and
  // kept; owned by the context (the pointer is valid until the next Drop or Disconnect).
  // Never coexists with the ESAPI session: starting either flushes the other, so the context
  // holds at most one TPM session slot (a direct swtpm TCTI has 3 and no resource manager).
  // TPM side effects on start: SRK context-loaded and flushed, TPM2_ReadPublic,
  // TPM2_StartAuthSession. Callers must call DropHmacSessionLocked() after any failed command.
  Result<HmacSession*> HmacSessionLocked(ESYS_CONTEXT* esys);
  // Within Run(): flushes the HMAC session, if any (next HmacSessionLocked starts another).
  void DropHmacSessionLocked(ESYS_CONTEXT* esys);

  // Within Run(): an ESYS_TR for the persistent object at `handle` (0x81xxxxxx), made once per
  // connection with TPM2_ReadPublic (Esys_TR_FromTPMPublic) and kept; uses no object slot.
  // A handle with no object is an error naming the handle (TPM_RC_HANDLE).
  Result<ESYS_TR> PersistentObjectLocked(ESYS_CONTEXT* esys, TPM2_HANDLE handle);
  // Within Run(): forgets the ESYS_TR of `handle` (after TPM2_EvictControl removed it); closes
  // it in ESAPI, sends nothing to the TPM.
  void ForgetPersistentLocked(ESYS_CONTEXT* esys, TPM2_HANDLE handle);

  // Flushes the cache and the session, then closes the TPM connection; the next Run()
  // reconnects. Lets another connection use a TPM that serves one connection at a time
  // (swtpm's TCP socket) from the same process.
  void Disconnect();

  // Number of transient objects the TPM reports as loaded (TPM2_GetCapability HANDLES), for
  // leak checks in tests. Flushes our own cache first.
  Result<size_t> CountTransientObjects();
  // Number of loaded + saved sessions the TPM reports, for leak checks. Flushes our own cached
  // sessions (ESAPI secure session and HMAC session) first.
  Result<size_t> CountSessions();

  static constexpr size_t kMaxLoadedKeys = 1;

 private:
  Status EnsureConnectedLocked();
  void DisconnectLocked(bool touch_tpm);
  // The transport's idle hook: flushes cached objects and sessions unless a thread is inside
  // Run() (try_lock: never waits; returns false then, and the connection stays open).
  static bool ReleaseWhenIdle(void* self);
  // Around every Run() on our swtpm transport. Transient handles (cached keys, sessions) and
  // the ESYS_TRs of persistent handles are trusted only on the connection they were made on:
  // between two connections another client may have flushed them and loaded its own object at
  // the same handle (a password-session TPM2_Sign would then sign with that object's key). So
  // a Run() that starts on a new connection, or sees a reconnect, forgets them without
  // flushing (they are not known to be ours any more). A transport error leaves ESAPI in an
  // error state: the ESYS context is finalized and made afresh on the next Run(). With
  // WIMSE_SWTPM_IDLE_MS=0 (a connection per command, no idle thread) each Run() releases what
  // it loaded at its end.
  void BeginRunLocked();
  void EndRunLocked();
  // Closes the ESYS_TRs of cached objects, sessions and persistent handles, sends nothing.
  void ForgetTransientLocked();
  // Finalizes ESYS and closes the TCTI without sending anything (after a transport error);
  // saved contexts are kept. The next Run() connects afresh.
  void ResetAfterTransportErrorLocked();
  // Saves, then flushes, cached objects and sessions (the idle release).
  void ReleaseLocked(ESYS_CONTEXT* esys);
  // Saves every cached object's context into saved_ (TPM2_ContextSave each; no slot used).
  void SaveCachedObjectsLocked(ESYS_CONTEXT* esys);
  friend void PrepareContextsForFork();
  friend void UnlockContextsAfterFork();

  std::string tcti_;
  std::mutex mu_;
  pid_t pid_ = 0;
  TSS2_TCTI_CONTEXT* tcti_ctx_ = nullptr;
  ESYS_CONTEXT* esys_ = nullptr;
  // The SRK as a saved context blob (TPMS_CONTEXT), valid for this connection.
  bool have_srk_context_ = false;
  TPMS_CONTEXT srk_context_{};
  struct CachedObject {
    Bytes key;
    ESYS_TR tr;
  };
  std::list<CachedObject> cache_;  // front = most recently used
  // Objects released to other clients when the connection went idle, as saved contexts
  // (TPM2_ContextSave; no slot): the next use is one TPM2_ContextLoad instead of loading the
  // SRK, TPM2_Load and flushing the SRK. Bounded; most recently released first.
  struct SavedObject {
    Bytes key;
    TPMS_CONTEXT context;
  };
  std::list<SavedObject> saved_;
  static constexpr size_t kMaxSavedObjects = 8;
  ESYS_TR session_ = ESYS_TR_NONE;             // the cached salted HMAC session (ESAPI), if any
  std::unique_ptr<HmacSession> hmac_session_;  // our own salted HMAC session, if any
  std::map<TPM2_HANDLE, ESYS_TR> persistent_;  // ESYS_TRs of persistent objects (no slot)
  uint64_t idle_releases_ = 0;
  // The transport connection (TransportState::connections) the cached handles were made on.
  uint64_t objects_connection_ = 0;
  uint64_t run_expected_connection_ = 0;  // set by BeginRunLocked
  uint64_t run_errors_ = 0;               // transport errors before the Run
  bool needs_reset_ = false;  // the idle hook saw a transport error: reset at the next Run
  std::atomic<bool> releasing_{false};  // the idle hook holds mu_ and is flushing
};

// A primary key just created, with its marshalled TPM2B_PUBLIC (the TPM's own bytes).
struct CreatedPrimary {
  TpmHandle handle;  // flushes the primary
  Bytes public_blob;
};

// Within TpmContext::Run(): TPM2_CreatePrimary in the endorsement hierarchy (empty hierarchy
// auth, password session) from `in_public`; `what` names the key in errors ("AK", "EK"). Uses
// one transient slot while the handle is held.
Result<CreatedPrimary> CreateEndorsementPrimaryLocked(ESYS_CONTEXT* esys,
                                                      const TPM2B_PUBLIC& in_public,
                                                      const char* what);

// The process-wide context for `tcti` (one per TCTI string). Thread-safe.
std::shared_ptr<TpmContext> SharedContext(const std::string& tcti);

}  // namespace wimse::tpm

#endif  // WIMSE_TPM_CONTEXT_H_
