// AuthLatch: which authorizations the TPM has rejected, remembered by the whole process tree, so
// a wrong auth value costs the TPM's dictionary-attack counter one strike however the program
// around it behaves.
//
// It is the one place WorkloadKey keeps rejections (none per key object): a refusal kept in the
// key object alone is not enough for servers: nginx re-reads its key on every reload (a new
// WorkloadKey each time), an OpenSSL program may decode the key per connection, and a pre-fork
// server loads the key once and forks workers that would each spend their own strike. A
// TPM locks out after a few strikes (3 on a fresh swtpm), so any of these turns a mistyped pass
// phrase into a lockout that unauthenticated TLS clients can trigger.
//
// The latch is a small table in an anonymous MAP_SHARED mapping made the first time it is used
// (Global(); WorkloadKey calls it when a key is opened): every process forked after that shares
// it, as a pre-fork server's workers do once the master has loaded its key. An entry is the SHA-256
// of (a random salt made with the table, which never leaves the mapping, || what was authorized ||
// the auth value), so the table holds nothing from which an auth value could be read. Entries are
// in one of two states:
//   trying   a thread (pid, tid) is making the first TPM attempt with this authorization;
//            other threads and processes wait (BeginFirstTry) instead of attempting in
//            parallel, each of which would cost a strike if the value were wrong (threads of
//            one process may use separate TPM contexts, which do not serialise them). A dead
//            thread's claim is taken over.
//   rejected the TPM answered TPM_RC_AUTH_FAIL/BAD_AUTH (the response code is kept); every later
//            attempt anywhere in the tree is refused before any TPM command, until the TPM has
//            forgiven that strike: after its lockout interval (TPM2_PT_LOCKOUT_INTERVAL, read
//            when the strike happened) the entry lapses and the value gets one more try. A
//            wrong value therefore never holds more than one strike of the counter at a time,
//            and a value that became right (auth changed on a persistent key with the same
//            Name, or a pass phrase rotated before the key) is not refused forever.
// A successful attempt frees its entry (callers keep their own "accepted" flag). The table has
// kSlots entries; when full, the oldest rejected entry is reused (a refusal then costs at most one
// more strike, never a storm). A process that was not forked from the one that made the table
// has its own table: separate programs each get their one try.
//
// Thread- and fork-safe: a robust, process-shared mutex guards the table; it is held only for
// table lookups, never across a TPM command.
#ifndef WIMSE_TPM_AUTH_LATCH_H_
#define WIMSE_TPM_AUTH_LATCH_H_

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <string_view>

#include "util/bytes.h"
#include "util/result.h"

namespace wimse::tpm {

class AuthLatch {
 public:
  using Fingerprint = std::array<uint8_t, 32>;
  static constexpr int kSlots = 256;

  // The process tree's table, made on first use (before any fork that should share it).
  // Never fails: without a shared mapping (mmap refused) a process-private table is used.
  static AuthLatch& Global();

  // The fingerprint of authorizing `object` (a Name, blobs, a handle: whatever identifies what
  // is authorized) in `domain` ("key", "parent") with `auth` (may be empty).
  Fingerprint Of(std::string_view domain, ByteView object, ByteView auth) const;

  // The response code the TPM gave when it rejected `fp`, or 0 if it has not.
  uint32_t Rejected(const Fingerprint& fp);
  // Records that the TPM rejected `fp` with `rc` (ends the caller's claim on it, if any). The
  // entry lapses `forgive_after` from now (the TPM's lockout interval); zero: never.
  void RecordRejected(const Fingerprint& fp, uint32_t rc,
                      std::chrono::seconds forgive_after = std::chrono::seconds(0));

  // The outcome of BeginFirstTry.
  enum class Claim {
    kMine,      // the caller now holds the first try: call EndFirstTry (or RecordRejected)
    kRejected,  // already rejected: do not send anything (Rejected(fp) has the code)
    kTimedOut,  // another live process held its first try longer than `wait`
  };
  // Claims the first attempt at `fp` for the calling thread, waiting (without holding any lock)
  // while another live thread, of this process or another, holds it. A claim the caller already
  // holds is kMine again. Callers must not hold a TPM context lock while they wait.
  Claim BeginFirstTry(const Fingerprint& fp, std::chrono::milliseconds wait);
  // Ends the calling thread's claim on `fp` after an attempt that was not an authorization
  // failure.
  void EndFirstTry(const Fingerprint& fp);

  // Whether the table is shared with forked children (false when mmap failed). For tests.
  bool shared() const { return shared_; }

  AuthLatch(const AuthLatch&) = delete;
  AuthLatch& operator=(const AuthLatch&) = delete;

 private:
  struct Table;
  explicit AuthLatch(Table* table, bool shared) : table_(table), shared_(shared) {}
  Table* table_;
  bool shared_;
};

}  // namespace wimse::tpm

#endif  // WIMSE_TPM_AUTH_LATCH_H_
