#include "tpm/auth_latch.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <thread>

namespace wimse::tpm {

namespace {
enum : uint32_t { kFree = 0, kTrying = 1, kRejected = 2 };
}  // namespace

struct AuthLatch::Table {
  pthread_mutex_t mu;
  uint8_t salt[32];
  uint64_t clock;  // orders rejected entries for reuse (oldest first)
  struct Slot {
    Fingerprint fp;
    uint32_t state;
    uint32_t rc;
    pid_t pid;  // the claimant of a 'trying' entry: process and thread
    pid_t tid;
    uint64_t stamp;
    int64_t forgiven_at;  // CLOCK_MONOTONIC ns after which a 'rejected' entry lapses; 0: never
  } slots[kSlots];

  // With `mu` held: the entry for `fp`, a free slot, the oldest rejected entry (or nullptr).
  Slot* Find(const Fingerprint& fp) {
    for (auto& s : slots) {
      if (s.state != kFree && s.fp == fp) return &s;
    }
    return nullptr;
  }
  Slot* FreeSlot() {
    for (auto& s : slots) {
      if (s.state == kFree) return &s;
    }
    return nullptr;
  }
  Slot* OldestRejected() {
    Slot* oldest = nullptr;
    for (auto& s : slots) {
      if (s.state == kRejected && (oldest == nullptr || s.stamp < oldest->stamp)) oldest = &s;
    }
    return oldest;
  }
};

namespace {

// Locks the table's robust mutex; a process that died holding it left the table consistent
// (every update is a few plain stores), so the lock is simply made consistent again.
class TableLock {
 public:
  explicit TableLock(pthread_mutex_t* mu) : mu_(mu) {
    if (pthread_mutex_lock(mu_) == EOWNERDEAD) pthread_mutex_consistent(mu_);
  }
  ~TableLock() { pthread_mutex_unlock(mu_); }
  TableLock(const TableLock&) = delete;
  TableLock& operator=(const TableLock&) = delete;

 private:
  pthread_mutex_t* mu_;
};

// Whether thread `tid` of process `pid` still exists (signal 0 checks without sending).
bool ThreadAlive(pid_t pid, pid_t tid) {
  if (pid <= 0 || tid <= 0) return false;
  return syscall(SYS_tgkill, pid, tid, 0) == 0 || errno == EPERM;
}

int64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // system-wide: comparable across the process tree
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Whether a rejected entry's strike has been forgiven by the TPM by now (see RecordRejected).
bool Forgiven(int64_t forgiven_at) { return forgiven_at != 0 && MonotonicNs() >= forgiven_at; }

void FillSalt(uint8_t* salt, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom(salt + got, n - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      break;
    }
    got += static_cast<size_t>(r);
  }
  // getrandom cannot fail on Linux >= 3.17 once the pool is ready; should it, the salt still
  // differs per table (address and pid) so fingerprints are not comparable across trees.
  if (got < n) {
    uint64_t mix = reinterpret_cast<uintptr_t>(salt) ^ (static_cast<uint64_t>(getpid()) << 32);
    std::memcpy(salt, &mix, sizeof(mix));
  }
}

}  // namespace

AuthLatch& AuthLatch::Global() {
  static AuthLatch* latch = [] {
    bool shared = true;
    void* mem =
        mmap(nullptr, sizeof(Table), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
      shared = false;
      mem = new Table;
    }
    auto* table = static_cast<Table*>(mem);
    std::memset(table, 0, sizeof(Table));
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    if (shared) pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&table->mu, &attr);
    pthread_mutexattr_destroy(&attr);
    FillSalt(table->salt, sizeof(table->salt));
    return new AuthLatch(table, shared);
  }();
  return *latch;
}

AuthLatch::Fingerprint AuthLatch::Of(std::string_view domain, ByteView object,
                                     ByteView auth) const {
  Fingerprint fp{};
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  auto put = [&](const void* p, size_t n) {
    uint32_t len = static_cast<uint32_t>(n);
    EVP_DigestUpdate(md, &len, sizeof(len));  // length-prefixed: fields cannot run together
    EVP_DigestUpdate(md, p, n);
  };
  bool ok = md != nullptr && EVP_DigestInit_ex(md, EVP_sha256(), nullptr) == 1;
  if (ok) {
    put(table_->salt, sizeof(table_->salt));
    put(domain.data(), domain.size());
    put(object.data(), object.size());
    put(auth.data(), auth.size());
    unsigned int n = 0;
    ok = EVP_DigestFinal_ex(md, fp.data(), &n) == 1 && n == fp.size();
  }
  EVP_MD_CTX_free(md);
  if (!ok) {
    // Without SHA-256 nothing else works either; an all-0xff fingerprint fails closed (every
    // authorization then shares one entry: at most one strike in all).
    fp.fill(0xff);
  }
  return fp;
}

uint32_t AuthLatch::Rejected(const Fingerprint& fp) {
  TableLock lock(&table_->mu);
  Table::Slot* s = table_->Find(fp);
  if (s == nullptr || s->state != kRejected) return 0;
  if (Forgiven(s->forgiven_at)) {
    std::memset(s, 0, sizeof(*s));
    return 0;
  }
  return s->rc;
}

void AuthLatch::RecordRejected(const Fingerprint& fp, uint32_t rc,
                               std::chrono::seconds forgive_after) {
  TableLock lock(&table_->mu);
  Table::Slot* target = table_->Find(fp);
  if (target == nullptr) target = table_->FreeSlot();
  if (target == nullptr) target = table_->OldestRejected();
  if (target == nullptr) return;  // every slot is a live first try: nothing to displace
  target->fp = fp;
  target->state = kRejected;
  target->rc = rc == 0 ? 1 : rc;
  target->pid = 0;
  target->tid = 0;
  target->stamp = ++table_->clock;
  target->forgiven_at =
      forgive_after.count() > 0
          ? MonotonicNs() +
                std::chrono::duration_cast<std::chrono::nanoseconds>(forgive_after).count()
          : 0;
}

AuthLatch::Claim AuthLatch::BeginFirstTry(const Fingerprint& fp, std::chrono::milliseconds wait) {
  const pid_t self = getpid();
  const pid_t thread = gettid();
  const auto deadline = std::chrono::steady_clock::now() + wait;
  auto pause = std::chrono::microseconds(200);
  for (;;) {
    {
      TableLock lock(&table_->mu);
      Table::Slot* found = table_->Find(fp);
      if (found != nullptr && found->state == kRejected) {
        if (!Forgiven(found->forgiven_at)) return Claim::kRejected;
        std::memset(found, 0, sizeof(*found));  // forgiven: one more try, claimed below
        found = nullptr;
      }
      if (found != nullptr &&
          ((found->pid == self && found->tid == thread) || !ThreadAlive(found->pid, found->tid))) {
        found->pid = self;  // ours already, or its holder died mid-try: take it over
        found->tid = thread;
        return Claim::kMine;
      }
      if (found == nullptr) {
        Table::Slot* slot = table_->FreeSlot();
        // A full table of live first tries is not worth waiting for: try without a claim.
        if (slot == nullptr) return Claim::kMine;
        std::memset(slot, 0, sizeof(*slot));
        slot->fp = fp;
        slot->state = kTrying;
        slot->pid = self;
        slot->tid = thread;
        slot->stamp = ++table_->clock;
        return Claim::kMine;
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) return Claim::kTimedOut;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(5000));
  }
}

void AuthLatch::EndFirstTry(const Fingerprint& fp) {
  TableLock lock(&table_->mu);
  Table::Slot* s = table_->Find(fp);
  if (s != nullptr && s->state == kTrying && s->pid == getpid() && s->tid == gettid()) {
    std::memset(s, 0, sizeof(*s));
  }
}

}  // namespace wimse::tpm
