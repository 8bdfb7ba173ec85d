// The credential service's durable state: enrolments, pending enrolments, single-use nonces
// with a TTL, AK clock states, and issued credentials.
//
// StateStore is the interface; SqliteStateStore the default implementation (one file, WAL).
// Every operation is one statement or one transaction whose effect is decided in the database
// (e.g. a nonce is consumed with one conditional UPDATE), so several service instances can
// share one database: a PostgreSQL implementation needs the same statements
// (UPDATE ... RETURNING, INSERT ... ON CONFLICT) and no in-process state.
#ifndef WIMSE_ATTEST_SERVICE_STATE_STORE_H_
#define WIMSE_ATTEST_SERVICE_STATE_STORE_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "attest/enrollment.h"
#include "attest/verifier.h"
#include "util/bytes.h"
#include "util/result.h"

struct sqlite3;

namespace wimse::service {

// Outcome of consuming a nonce.
enum class NonceUse {
  kOk,             // existed, unused, unexpired, bound to the identity: now used
  kUnknown,        // never issued (or purged)
  kReplayed,       // already used
  kExpired,        // TTL passed
  kWrongIdentity,  // issued to another identity
};
std::string_view NonceUseCode(NonceUse use);

// What a nonce recorded when it was issued (returned when it is consumed).
//
// Freshness comes from the single-use nonce; the TPM clock check only has to prove that the
// quote was made after every quote this service accepted *before the nonce was issued*. So
// the floor is the AK's clock state on file at issuance, not at appraisal: several agents of
// one TPM (one AK) quote concurrently and their attests arrive in any order, and a quote must
// not be refused because a later quote of the same TPM was appraised first.
struct NonceRecord {
  int64_t issued_at = 0;
  // The AK enrolled for the identity when the nonce was issued (empty: none) and its clock
  // state on file then (absent: no quote of that AK accepted yet).
  Bytes ak_name;
  std::optional<attest::ClockState> clock_floor;
};

// One issued credential (no token, no key: hashes and public facts only).
struct IssuedCredential {
  std::string serial_hex;
  std::string identity;
  std::string identifier;
  std::string key_thumbprint;  // RFC 7638 of the attested key
  std::string wit_sha256;      // hex
  int64_t issued_at = 0;
  int64_t expires_at = 0;
};

class StateStore {
 public:
  virtual ~StateStore() = default;

  // Pending enrolments (between start and finish), single use, expiring.
  virtual Status PutPendingEnrollment(const std::string& id, const std::string& pending_json,
                                      int64_t expires_at) = 0;
  // Returns and deletes the pending enrolment `id` if it exists and has not expired at `now`.
  virtual Result<std::optional<std::string>> TakePendingEnrollment(const std::string& id,
                                                                   int64_t now) = 0;

  // Enrolments, keyed by identity (insert or replace).
  virtual Status PutEnrollment(const attest::EnrollmentRecord& record, int64_t now) = 0;
  virtual Result<std::optional<attest::EnrollmentRecord>> GetEnrollment(
      const std::string& identity) = 0;
  virtual Result<uint64_t> CountEnrollments() = 0;

  // Nonces: issued to one identity, used once, until `expires_at`. In the same statement the
  // nonce records the AK enrolled for `identity` and that AK's clock state on file (the clock
  // floor, see NonceRecord), so no accepted quote can slip between reading the floor and
  // issuing the nonce.
  virtual Status PutNonce(ByteView nonce, const std::string& identity, int64_t issued_at,
                          int64_t expires_at) = 0;
  // Marks the nonce used (one conditional UPDATE) and reports what it found; `record` (may be
  // null) is filled on kOk.
  virtual Result<NonceUse> ConsumeNonce(ByteView nonce, const std::string& identity, int64_t now,
                                        NonceRecord* record) = 0;

  // The highest accepted TPM clock state per AK Name, ordered by (resetCount, restartCount,
  // clock) (reboot/rollback detection).
  virtual Result<std::optional<attest::ClockState>> GetClock(ByteView ak_name) = 0;
  // Raises the AK's clock state to `clock` if it is higher in that order; never lowers it. One
  // conditional upsert: concurrent appraisals of one AK leave the highest state whatever the
  // order they finish in.
  virtual Status RaiseClock(ByteView ak_name, const attest::ClockState& clock) = 0;

  virtual Status RecordIssued(const IssuedCredential& credential) = 0;
  virtual Result<uint64_t> CountIssued() = 0;

  // Deletes nonces and pending enrolments expired before `now` (used nonces are kept until
  // they expire, so a replay is reported as such). Returns the rows removed.
  virtual Result<uint64_t> PurgeExpired(int64_t now) = 0;
};

// SQLite implementation. One connection behind a mutex (SQLite statements are short; WAL
// lets readers of other processes proceed). Durable across process restarts (synchronous =
// NORMAL in WAL mode: a crash of the process loses nothing; a power loss may lose the last
// transactions). Thread-safe.
class SqliteStateStore : public StateStore {
 public:
  // Opens or creates the database at `path` and its schema.
  static Result<std::unique_ptr<SqliteStateStore>> Open(const std::string& path);
  ~SqliteStateStore() override;

  Status PutPendingEnrollment(const std::string& id, const std::string& pending_json,
                              int64_t expires_at) override;
  Result<std::optional<std::string>> TakePendingEnrollment(const std::string& id,
                                                           int64_t now) override;
  Status PutEnrollment(const attest::EnrollmentRecord& record, int64_t now) override;
  Result<std::optional<attest::EnrollmentRecord>> GetEnrollment(
      const std::string& identity) override;
  Result<uint64_t> CountEnrollments() override;
  Status PutNonce(ByteView nonce, const std::string& identity, int64_t issued_at,
                  int64_t expires_at) override;
  Result<NonceUse> ConsumeNonce(ByteView nonce, const std::string& identity, int64_t now,
                                NonceRecord* record) override;
  Result<std::optional<attest::ClockState>> GetClock(ByteView ak_name) override;
  Status RaiseClock(ByteView ak_name, const attest::ClockState& clock) override;
  Status RecordIssued(const IssuedCredential& credential) override;
  Result<uint64_t> CountIssued() override;
  Result<uint64_t> PurgeExpired(int64_t now) override;

 private:
  SqliteStateStore() = default;
  Status Exec(const char* sql);
  // Adds the nonce clock-floor columns to a database made before they existed.
  Status MigrateNonces();
  std::mutex mu_;
  sqlite3* db_ = nullptr;
  std::string path_;
};

}  // namespace wimse::service

#endif  // WIMSE_ATTEST_SERVICE_STATE_STORE_H_
