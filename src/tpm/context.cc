#include "tpm/context.h"

#include <pthread.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>

#include "crypto/tpm_public.h"
#include "tpm/hmac_session.h"
#include "tpm/tcti.h"
#include "tpm/templates.h"

namespace wimse::tpm {

std::string ResolveTcti(const std::string& flag) {
  if (!flag.empty()) return flag;
  const char* env = std::getenv("WIMSE_TPM_TCTI");
  if (env != nullptr && env[0] != '\0') return env;
  return "device:/dev/tpmrm0";
}

Error TpmError(const char* command, TSS2_RC rc) {
  TSS2_RC layer = rc & TSS2_RC_LAYER_MASK;
  TSS2_RC base = rc & 0xffff;
  bool transport = layer == TSS2_TCTI_RC_LAYER ||
                   ((layer == TSS2_ESAPI_RC_LAYER || layer == TSS2_SYS_RC_LAYER) &&
                    (base == TSS2_BASE_RC_IO_ERROR || base == TSS2_BASE_RC_NO_CONNECTION ||
                     base == TSS2_BASE_RC_TRY_AGAIN));
  return Error(transport ? Layer::kTcti : Layer::kTpm, std::string(command) + " failed", rc);
}

TpmHandle& TpmHandle::operator=(TpmHandle&& o) noexcept {
  if (this != &o) {
    Reset();
    ctx_ = o.ctx_;
    tr_ = o.tr_;
    release_ = o.release_;
    o.tr_ = ESYS_TR_NONE;
  }
  return *this;
}

void TpmHandle::Reset() {
  if (tr_ != ESYS_TR_NONE && ctx_ != nullptr) {
    if (release_ == Release::kFlush) {
      Esys_FlushContext(ctx_, tr_);
    } else {
      Esys_TR_Close(ctx_, &tr_);
    }
  }
  tr_ = ESYS_TR_NONE;
}

namespace {

// Every live TpmContext of this copy of the library (the CLI and the provider module each have
// their own). Without a resource manager (a direct swtpm TCTI) the TPM keeps whatever a process
// left loaded after it exits, and applications often exit without freeing their keys or
// tearing providers down, so the cached objects of every context are flushed at exit.
std::mutex& RegistryMutex() {
  static auto* mu = new std::mutex();
  return *mu;
}
std::set<TpmContext*>& Registry() {
  static auto* contexts = new std::set<TpmContext*>();
  return *contexts;
}
void FlushAllAtExit() {
  std::lock_guard<std::mutex> lock(RegistryMutex());
  for (TpmContext* ctx : Registry()) ctx->FlushCacheIfIdle();
}

}  // namespace

// fork(): the transport's idle thread may be inside a context's lock (releasing its objects)
// when another thread forks; the child would inherit that lock held by a thread it does not
// have. Every context's lock is taken before fork() and released on both sides. These
// handlers are installed after the transport's, so their prepare step runs first: a thread
// inside Run() finishes its command (which needs the transport's lock) before the transport's
// own prepare step takes it.
void PrepareContextsForFork() {
  RegistryMutex().lock();
  for (TpmContext* ctx : Registry()) ctx->mu_.lock();
}
void UnlockContextsAfterFork() {
  for (TpmContext* ctx : Registry()) ctx->mu_.unlock();
  RegistryMutex().unlock();
}

TpmContext::TpmContext(std::string tcti) : tcti_(std::move(tcti)) {
  static const bool fork_handlers = [] {
    InstallTransportForkHandlers();
    pthread_atfork(PrepareContextsForFork, UnlockContextsAfterFork, UnlockContextsAfterFork);
    return true;
  }();
  (void)fork_handlers;
  std::lock_guard<std::mutex> lock(RegistryMutex());
  // atexit in a shared object runs when the object is unloaded or at exit, whichever is first.
  static const bool registered = (std::atexit(FlushAllAtExit), true);
  (void)registered;
  Registry().insert(this);
}

bool TpmContext::ReleaseWhenIdle(void* self) {
  auto* ctx = static_cast<TpmContext*>(self);
  std::unique_lock<std::mutex> lock(ctx->mu_, std::try_to_lock);
  if (!lock.owns_lock()) return false;  // inside an operation: keep the connection
  if (ctx->esys_ == nullptr || ctx->pid_ != getpid() || ctx->needs_reset_) return true;
  TransportState st = GetTransportState(ctx->tcti_ctx_);
  if (st.connections != ctx->objects_connection_) {
    ctx->ForgetTransientLocked();  // made on another connection: not ours to save or flush
    return true;
  }
  if (ctx->cache_.empty() && ctx->session_ == ESYS_TR_NONE && !ctx->hmac_session_) return true;
  ctx->releasing_ = true;
  ctx->ReleaseLocked(ctx->esys_);
  ++ctx->idle_releases_;
  ctx->releasing_ = false;
  // An I/O failure here leaves ESAPI in an error state; the next Run() starts afresh (it
  // cannot be done from this thread: closing the TCTI joins it).
  if (GetTransportState(ctx->tcti_ctx_).errors != st.errors) ctx->needs_reset_ = true;
  return true;
}

void TpmContext::ReleaseLocked(ESYS_CONTEXT* esys) {
  SaveCachedObjectsLocked(esys);
  FlushCacheLocked(esys);
  DropSecureSessionLocked(esys);
  DropHmacSessionLocked(esys);
}

void TpmContext::ForgetTransientLocked() {
  for (CachedObject& obj : cache_) Esys_TR_Close(esys_, &obj.tr);
  cache_.clear();
  if (session_ != ESYS_TR_NONE) Esys_TR_Close(esys_, &session_);
  session_ = ESYS_TR_NONE;
  hmac_session_.reset();  // its key is wiped; the TPM session is not ours to flush any more
  for (auto& [handle, tr] : persistent_) Esys_TR_Close(esys_, &tr);
  persistent_.clear();
}

void TpmContext::ResetAfterTransportErrorLocked() {
  cache_.clear();
  session_ = ESYS_TR_NONE;
  hmac_session_.reset();
  persistent_.clear();
  if (esys_ != nullptr) Esys_Finalize(&esys_);
  if (tcti_ctx_ != nullptr) CloseTcti(&tcti_ctx_);
  esys_ = nullptr;
  tcti_ctx_ = nullptr;
  pid_ = 0;
  needs_reset_ = false;
}

void TpmContext::BeginRunLocked() {
  TransportState st = GetTransportState(tcti_ctx_);
  if (!st.persistent) return;  // tpm2-tss's TCTIs: a kernel resource manager or an exclusive device
  run_expected_connection_ = st.open ? st.connections : st.connections + 1;
  run_errors_ = st.errors;
  bool holds = !cache_.empty() || session_ != ESYS_TR_NONE || hmac_session_ || !persistent_.empty();
  // (With idle 0 the previous Run released everything but persistent ESYS_TRs, re-read here.)
  if (holds && (!st.open || st.connections != objects_connection_)) ForgetTransientLocked();
  objects_connection_ = run_expected_connection_;
}

void TpmContext::EndRunLocked() {
  TransportState st = GetTransportState(tcti_ctx_);
  if (!st.persistent) return;
  if (st.errors != run_errors_) {
    ResetAfterTransportErrorLocked();
    return;
  }
  if (st.idle_ms == 0) {
    // A connection per command and no idle thread: hand everything back now (every command
    // of the Run was on a connection of its own, so reconnects say nothing here).
    ReleaseLocked(esys_);
    objects_connection_ = GetTransportState(tcti_ctx_).connections;
    return;
  }
  if (st.connections > run_expected_connection_) {
    // Reconnected in the middle (the server hung up between two commands): what was loaded
    // before may be gone, and its handles someone else's.
    ForgetTransientLocked();
  }
  objects_connection_ = st.connections;
}

uint64_t TpmContext::idle_releases() {
  std::lock_guard<std::mutex> lock(mu_);
  return idle_releases_;
}

TpmContext::~TpmContext() {
  {
    std::lock_guard<std::mutex> lock(RegistryMutex());
    Registry().erase(this);
  }
  std::lock_guard<std::mutex> lock(mu_);
  DisconnectLocked(/*touch_tpm=*/pid_ == getpid());
}

void TpmContext::FlushCacheIfIdle() {
  // At exit another thread may still be inside Run(); never block the exiting thread on it.
  // The transport's idle thread releasing our objects is different: it finishes in a few
  // commands, and an exit in the middle of it would leave a session or key loaded in a TPM
  // without a resource manager. Wait for it.
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (!lock.owns_lock() && releasing_.load()) lock.lock();
  if (!lock.owns_lock()) return;
  if (esys_ != nullptr && pid_ == getpid()) {
    FlushCacheLocked(esys_);
    DropSecureSessionLocked(esys_);
    DropHmacSessionLocked(esys_);
  }
}

void TpmContext::DisconnectLocked(bool touch_tpm) {
  if (esys_ != nullptr && touch_tpm) {
    for (CachedObject& obj : cache_) Esys_FlushContext(esys_, obj.tr);
    if (session_ != ESYS_TR_NONE) Esys_FlushContext(esys_, session_);
    if (hmac_session_) hmac_session_->Flush(esys_);
  }
  cache_.clear();
  saved_.clear();
  session_ = ESYS_TR_NONE;
  hmac_session_.reset();  // after fork(): forgotten (and its key wiped), never flushed
  persistent_.clear();    // ESYS_TRs die with the ESYS context
  have_srk_context_ = false;
  if (touch_tpm) {
    if (esys_ != nullptr) Esys_Finalize(&esys_);
    if (tcti_ctx_ != nullptr) CloseTcti(&tcti_ctx_);
  }
  // After fork() the inherited ESYS/TCTI state belongs to the parent: it is abandoned, not
  // finalized, because finalizing could send commands on the parent's connection.
  esys_ = nullptr;
  tcti_ctx_ = nullptr;
  pid_ = 0;
}

Status TpmContext::EnsureConnectedLocked() {
  if (needs_reset_ && pid_ == getpid()) ResetAfterTransportErrorLocked();
  pid_t now = getpid();
  if (esys_ != nullptr && pid_ == now) return OkStatus();
  if (esys_ != nullptr) DisconnectLocked(/*touch_tpm=*/false);
  TSS2_RC rc = OpenTcti(tcti_, &tcti_ctx_);
  if (rc != TSS2_RC_SUCCESS) {
    tcti_ctx_ = nullptr;
    std::string why;
    if (tcti_.rfind("device:", 0) == 0 || tcti_ == "device") {
      // tpm2-tss reports only an I/O failure; the usual cause is a missing device node or
      // missing permission on it.
      std::string path = tcti_ == "device" ? "/dev/tpmrm0" : tcti_.substr(7);
      if (path.empty()) path = "/dev/tpmrm0";
      if (access(path.c_str(), F_OK) != 0) {
        why = " (" + path + " does not exist: no TPM, or its driver is not loaded)";
      } else if (access(path.c_str(), R_OK | W_OK) != 0) {
        why = " (" + path + ": permission denied; the tss group or root may use it)";
      }
    }
    if (why.empty() && (rc & 0xffff) == TSS2_BASE_RC_NOT_SUPPORTED) {
      // The loader found no TCTI module of that name (tpm2-tss's text says only "Functionality
      // not supported").
      std::string module = tcti_.substr(0, tcti_.find(':'));
      why = " (no TCTI module named \"" + module + "\": tpm2-tss looks for libtss2-tcti-" + module +
            ".so.0; usual ones: device, swtpm, mssim, tabrmd)";
    }
    return Error(Layer::kTcti, "cannot reach the TPM at TCTI \"" + tcti_ + "\"" + why, rc);
  }
  rc = Esys_Initialize(&esys_, tcti_ctx_, nullptr);
  if (rc != TSS2_RC_SUCCESS) {
    CloseTcti(&tcti_ctx_);
    esys_ = nullptr;
    return Error(Layer::kTcti, "cannot initialise ESAPI on TCTI \"" + tcti_ + "\"", rc);
  }
  // Probe: one cheap command proves the TPM answers and is started.
  TPMS_CAPABILITY_DATA* caps = nullptr;
  rc = Esys_GetCapability(esys_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_TPM_PROPERTIES,
                          TPM2_PT_MANUFACTURER, 1, nullptr, &caps);
  Esys_Free(caps);
  if (rc != TSS2_RC_SUCCESS) {
    Esys_Finalize(&esys_);
    std::string why = GetTransportStats(tcti_ctx_).last_error;
    CloseTcti(&tcti_ctx_);
    esys_ = nullptr;
    if ((rc & TSS2_RC_LAYER_MASK) == TSS2_TPM_RC_LAYER) {
      // It answered: say what it said rather than "does not answer".
      std::string what = "the TPM at TCTI \"" + tcti_ + "\" refused its first command";
      if (rc == TPM2_RC_INITIALIZE) {
        what +=
            " because it has not been started (TPM2_Startup: `tpm2_startup -c`; swtpm "
            "needs --flags startup-clear)";
      } else if (rc == TPM2_RC_FAILURE) {
        what +=
            " because it is in failure mode (TPM2_GetTestResult tells why; a power cycle "
            "or the vendor's recovery is needed)";
      }
      return Error(Layer::kTpm, what, rc);
    }
    return Error(Layer::kTcti,
                 "the TPM at TCTI \"" + tcti_ + "\" does not answer" +
                     (why.empty() ? std::string() : " (" + why + ")"),
                 rc);
  }
  pid_ = now;
  SetIdleHook(tcti_ctx_, &TpmContext::ReleaseWhenIdle, this);
  return OkStatus();
}

Status TpmContext::Connect() {
  std::lock_guard<std::mutex> lock(mu_);
  return EnsureConnectedLocked();
}

TransportStats TpmContext::transport_stats() {
  std::lock_guard<std::mutex> lock(mu_);
  if (tcti_ctx_ == nullptr || pid_ != getpid()) return {};
  return GetTransportStats(tcti_ctx_);
}

namespace {
Result<size_t> CountHandles(ESYS_CONTEXT* esys, TPM2_HANDLE first);
}  // namespace

Result<TpmHandle> TpmContext::LoadStoragePrimaryLocked(ESYS_CONTEXT* esys) {
  if (have_srk_context_) {
    ESYS_TR tr = ESYS_TR_NONE;
    TSS2_RC rc = Esys_ContextLoad(esys, &srk_context_, &tr);
    if (rc == TSS2_RC_SUCCESS) return TpmHandle(esys, tr, TpmHandle::Release::kFlush);
    if ((rc & TSS2_RC_LAYER_MASK) != TSS2_TPM_RC_LAYER) {
      return TpmError("TPM2_ContextLoad (storage primary 0x40000001)", rc);
    }
    // The saved context can go stale (TPM restarted); fall through and re-create.
    have_srk_context_ = false;
  }
  TPM2B_SENSITIVE_CREATE sensitive{};
  TPM2B_PUBLIC in_public = StoragePrimaryTemplateEccP256();
  TPM2B_DATA outside{};
  TPML_PCR_SELECTION pcrs{};
  ESYS_TR tr = ESYS_TR_NONE;
  auto create = [&]() {
    return Esys_CreatePrimary(esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                              &sensitive, &in_public, &outside, &pcrs, &tr, nullptr, nullptr,
                              nullptr, nullptr);
  };
  TSS2_RC rc = create();
  if ((rc & ~TPM2_RC_N_MASK) == TPM2_RC_OBJECT_MEMORY || rc == TPM2_RC_OBJECT_MEMORY) {
    FlushCacheLocked(esys);
    rc = create();
  }
  if ((rc & ~TPM2_RC_N_MASK) == TPM2_RC_OBJECT_MEMORY || rc == TPM2_RC_OBJECT_MEMORY) {
    return ObjectSlotErrorLocked(esys, "TPM2_CreatePrimary (storage primary 0x40000001)", rc);
  }
  if (rc != TSS2_RC_SUCCESS) return TpmError("TPM2_CreatePrimary (storage primary 0x40000001)", rc);
  TpmHandle handle(esys, tr, TpmHandle::Release::kFlush);
  TPMS_CONTEXT* saved = nullptr;
  rc = Esys_ContextSave(esys, tr, &saved);
  if (rc == TSS2_RC_SUCCESS && saved != nullptr) {
    srk_context_ = *saved;
    have_srk_context_ = true;
  }
  Esys_Free(saved);
  return handle;
}

Result<ESYS_TR> TpmContext::CachedObjectLocked(
    ESYS_CONTEXT* esys, ByteView cache_key,
    const std::function<Result<ESYS_TR>(ESYS_CONTEXT*)>& load) {
  for (auto it = cache_.begin(); it != cache_.end(); ++it) {
    if (it->key.size() == cache_key.size() &&
        std::equal(it->key.begin(), it->key.end(), cache_key.begin())) {
      cache_.splice(cache_.begin(), cache_, it);
      return cache_.front().tr;
    }
  }
  while (cache_.size() >= kMaxLoadedKeys) {
    Esys_FlushContext(esys, cache_.back().tr);
    cache_.pop_back();
  }
  for (auto it = saved_.begin(); it != saved_.end(); ++it) {
    if (it->key.size() == cache_key.size() &&
        std::equal(it->key.begin(), it->key.end(), cache_key.begin())) {
      ESYS_TR tr = ESYS_TR_NONE;
      TSS2_RC rc = Esys_ContextLoad(esys, &it->context, &tr);
      Bytes key = std::move(it->key);
      saved_.erase(it);  // loaded, or stale (TPM restarted): either way not kept
      if (rc == TSS2_RC_SUCCESS) {
        cache_.push_front(CachedObject{std::move(key), tr});
        return tr;
      }
      // A transport failure is the caller's error (ESAPI is in an error state now); a TPM
      // that refuses the context (restarted: new context key) gets the long way.
      if ((rc & TSS2_RC_LAYER_MASK) != TSS2_TPM_RC_LAYER) {
        return TpmError("TPM2_ContextLoad (saved key)", rc);
      }
      break;
    }
  }
  WIMSE_ASSIGN_OR_RETURN(ESYS_TR tr, load(esys));
  cache_.push_front(CachedObject{Bytes(cache_key.begin(), cache_key.end()), tr});
  return tr;
}

void TpmContext::SaveCachedObjectsLocked(ESYS_CONTEXT* esys) {
  for (const CachedObject& obj : cache_) {
    TPMS_CONTEXT* saved = nullptr;
    if (Esys_ContextSave(esys, obj.tr, &saved) != TSS2_RC_SUCCESS || saved == nullptr) {
      Esys_Free(saved);
      continue;  // reloaded the long way next time
    }
    saved_.push_front(SavedObject{obj.key, *saved});
    Esys_Free(saved);
    while (saved_.size() > kMaxSavedObjects) saved_.pop_back();
  }
}

void TpmContext::FlushCacheLocked(ESYS_CONTEXT* esys) {
  for (CachedObject& obj : cache_) Esys_FlushContext(esys, obj.tr);
  cache_.clear();
}

void TpmContext::FlushCache() {
  std::lock_guard<std::mutex> lock(mu_);
  if (esys_ != nullptr && pid_ == getpid()) {
    FlushCacheLocked(esys_);
    DropSecureSessionLocked(esys_);
    DropHmacSessionLocked(esys_);
  }
}

void TpmContext::Disconnect() {
  std::lock_guard<std::mutex> lock(mu_);
  DisconnectLocked(/*touch_tpm=*/esys_ != nullptr && pid_ == getpid());
}

Result<ESYS_TR> TpmContext::SecureSessionLocked(ESYS_CONTEXT* esys) {
  if (session_ != ESYS_TR_NONE) return session_;
  DropHmacSessionLocked(esys);  // at most one of our sessions holds a TPM slot
  WIMSE_ASSIGN_OR_RETURN(TpmHandle srk, LoadStoragePrimaryLocked(esys));
  TPMT_SYM_DEF symmetric{};
  symmetric.algorithm = TPM2_ALG_AES;
  symmetric.keyBits.aes = 128;
  symmetric.mode.aes = TPM2_ALG_CFB;
  ESYS_TR session = ESYS_TR_NONE;
  // tpmKey = the SRK: ESAPI encrypts a fresh salt to its public key (ECDH), so the session key
  // is unknown to anyone watching the bus even for objects with an empty or guessable auth.
  TSS2_RC rc =
      Esys_StartAuthSession(esys, srk.get(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                            nullptr, TPM2_SE_HMAC, &symmetric, TPM2_ALG_SHA256, &session);
  if (rc == TPM2_RC_SESSION_MEMORY || rc == TPM2_RC_SESSION_HANDLES) {
    return Error(Layer::kTpm,
                 "TPM2_StartAuthSession: the TPM has no free session slot (other "
                 "clients hold them)",
                 rc);
  }
  if (rc != TSS2_RC_SUCCESS) return TpmError("TPM2_StartAuthSession (salted, AES-128-CFB)", rc);
  session_ = session;
  return session_;
}

void TpmContext::DropSecureSessionLocked(ESYS_CONTEXT* esys) {
  if (session_ != ESYS_TR_NONE) {
    // A session the TPM already discarded makes this fail harmlessly; ESAPI still frees the TR.
    if (Esys_FlushContext(esys, session_) != TSS2_RC_SUCCESS) Esys_TR_Close(esys, &session_);
    session_ = ESYS_TR_NONE;
  }
}

Result<HmacSession*> TpmContext::HmacSessionLocked(ESYS_CONTEXT* esys) {
  if (hmac_session_) return hmac_session_.get();
  DropSecureSessionLocked(esys);  // at most one of our sessions holds a TPM slot
  WIMSE_ASSIGN_OR_RETURN(TpmHandle srk, LoadStoragePrimaryLocked(esys));
  WIMSE_ASSIGN_OR_RETURN(hmac_session_, HmacSession::Start(esys, srk.get()));
  return hmac_session_.get();
}

void TpmContext::DropHmacSessionLocked(ESYS_CONTEXT* esys) {
  if (hmac_session_) {
    hmac_session_->Flush(esys);
    hmac_session_.reset();
  }
}

Result<ESYS_TR> TpmContext::PersistentObjectLocked(ESYS_CONTEXT* esys, TPM2_HANDLE handle) {
  auto it = persistent_.find(handle);
  if (it != persistent_.end()) return it->second;
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", handle);
  if ((handle >> 24) != TPM2_HT_PERSISTENT) {
    return Error(Layer::kUsage, std::string(buf) + " is not a persistent handle (0x81xxxxxx)");
  }
  ESYS_TR tr = ESYS_TR_NONE;
  TSS2_RC rc = Esys_TR_FromTPMPublic(esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr);
  if ((rc & 0xffff0000u) == 0 && (rc & TPM2_RC_FMT1) != 0 &&
      (rc & 0x3f) == (TPM2_RC_HANDLE & 0x3f)) {
    return Error(Layer::kTpm, std::string("no persistent object at handle ") + buf, rc);
  }
  if (rc != TSS2_RC_SUCCESS) {
    return TpmError((std::string("TPM2_ReadPublic of persistent handle ") + buf).c_str(), rc);
  }
  persistent_[handle] = tr;
  return tr;
}

void TpmContext::ForgetPersistentLocked(ESYS_CONTEXT* esys, TPM2_HANDLE handle) {
  auto it = persistent_.find(handle);
  if (it == persistent_.end()) return;
  ESYS_TR tr = it->second;
  persistent_.erase(it);
  Esys_TR_Close(esys, &tr);
}

namespace {
Result<size_t> CountHandles(ESYS_CONTEXT* esys, TPM2_HANDLE first) {
  TPMS_CAPABILITY_DATA* caps = nullptr;
  TSS2_RC rc = Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES,
                                  first, TPM2_MAX_CAP_HANDLES, nullptr, &caps);
  if (rc != TSS2_RC_SUCCESS) return TpmError("TPM2_GetCapability(HANDLES)", rc);
  size_t n = 0;
  for (uint32_t i = 0; i < caps->data.handles.count; ++i) {
    if ((caps->data.handles.handle[i] >> 24) == (first >> 24)) ++n;
  }
  Esys_Free(caps);
  return n;
}
}  // namespace

Error TpmContext::ObjectSlotErrorLocked(ESYS_CONTEXT* esys, const std::string& command, TSS2_RC rc,
                                        size_t held) {
  Result<size_t> loaded = CountHandles(esys, TPM2_TRANSIENT_FIRST);
  std::string why = command + ": no free object slot in the TPM";
  size_t ours = cache_.size() + held;
  if (loaded.ok() && *loaded > ours) {
    why += " (" + std::to_string(*loaded) + " transient objects are loaded, " +
           std::to_string(*loaded - ours) +
           " of them not by this context: wimse-tpm's own clients hand their slots back when "
           "idle, but a process that was killed, or another tool, leaves its objects in a TPM "
           "without a resource manager; flush them with `tpm2_flushcontext -t`, or use "
           "/dev/tpmrm0 or tpm2-abrmd)";
  }
  return Error(Layer::kTpm, why, rc);
}

Result<size_t> TpmContext::CountTransientObjects() {
  return Run([&](ESYS_CONTEXT* esys) -> Result<size_t> {
    FlushCacheLocked(esys);
    return CountHandles(esys, TPM2_TRANSIENT_FIRST);
  });
}

Result<size_t> TpmContext::CountSessions() {
  return Run([&](ESYS_CONTEXT* esys) -> Result<size_t> {
    DropSecureSessionLocked(esys);
    DropHmacSessionLocked(esys);
    WIMSE_ASSIGN_OR_RETURN(size_t loaded, CountHandles(esys, TPM2_LOADED_SESSION_FIRST));
    WIMSE_ASSIGN_OR_RETURN(size_t saved, CountHandles(esys, TPM2_ACTIVE_SESSION_FIRST));
    return loaded + saved;
  });
}

Result<CreatedPrimary> CreateEndorsementPrimaryLocked(ESYS_CONTEXT* esys,
                                                      const TPM2B_PUBLIC& in_public,
                                                      const char* what) {
  TPM2B_SENSITIVE_CREATE sensitive{};
  TPM2B_DATA outside_info{};
  TPML_PCR_SELECTION creation_pcr{};
  ESYS_TR handle = ESYS_TR_NONE;
  TPM2B_PUBLIC* out_public = nullptr;
  TSS2_RC rc = Esys_CreatePrimary(esys, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                  ESYS_TR_NONE, &sensitive, &in_public, &outside_info,
                                  &creation_pcr, &handle, &out_public, nullptr, nullptr, nullptr);
  std::unique_ptr<TPM2B_PUBLIC, void (*)(void*)> owner(out_public, Esys_Free);
  if (rc != TSS2_RC_SUCCESS) {
    return TpmError((std::string("TPM2_CreatePrimary(endorsement, ") + what + ")").c_str(), rc);
  }
  CreatedPrimary created;
  created.handle = TpmHandle(esys, handle, TpmHandle::Release::kFlush);
  if (out_public == nullptr) {
    return Error(Layer::kInternal, "TPM2_CreatePrimary returned no public area");
  }
  WIMSE_ASSIGN_OR_RETURN(created.public_blob, MarshalTpm2bPublic(*out_public));
  return created;
}

std::shared_ptr<TpmContext> SharedContext(const std::string& tcti) {
  static std::mutex mu;
  // Intentionally leaked: contexts live until exit, so no destructor runs against a TPM
  // connection during static destruction (the provider may be unloaded in any order).
  static auto* contexts = new std::map<std::string, std::shared_ptr<TpmContext>>();
  std::lock_guard<std::mutex> lock(mu);
  auto it = contexts->find(tcti);
  if (it != contexts->end()) return it->second;
  auto ctx = std::make_shared<TpmContext>(tcti);
  (*contexts)[tcti] = ctx;
  return ctx;
}

}  // namespace wimse::tpm
