#include <sqlite3.h>

#include "attest/service/state_store.h"

namespace wimse::service {

namespace {

constexpr char kSchema[] = R"sql(
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS enrolments (
  identity TEXT PRIMARY KEY,
  record TEXT NOT NULL,
  ak_name BLOB NOT NULL,
  enrolled_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pending_enrolments (
  id TEXT PRIMARY KEY,
  pending TEXT NOT NULL,
  expires_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS nonces (
  nonce BLOB PRIMARY KEY,
  identity TEXT NOT NULL,
  issued_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  used INTEGER NOT NULL DEFAULT 0,
  floor_ak BLOB,
  floor_clock INTEGER,
  floor_reset INTEGER,
  floor_restart INTEGER);
CREATE INDEX IF NOT EXISTS nonces_expiry ON nonces (expires_at);
CREATE TABLE IF NOT EXISTS ak_clocks (
  ak_name BLOB PRIMARY KEY,
  clock INTEGER NOT NULL,
  reset_count INTEGER NOT NULL,
  restart_count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS issued (
  serial TEXT PRIMARY KEY,
  identity TEXT NOT NULL,
  identifier TEXT NOT NULL,
  key_thumbprint TEXT NOT NULL,
  wit_sha256 TEXT NOT NULL,
  issued_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL);
)sql";

// A prepared statement that finalises itself.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return rc_ == SQLITE_OK; }
  Stmt& Text(int i, const std::string& s) {
    sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Blob(int i, ByteView b) {
    sqlite3_bind_blob(stmt_, i, b.data(), static_cast<int>(b.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Int(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return rc_ = sqlite3_step(stmt_); }
  std::string ColText(int i) {
    const unsigned char* t = sqlite3_column_text(stmt_, i);
    return t ? std::string(reinterpret_cast<const char*>(t),
                           static_cast<size_t>(sqlite3_column_bytes(stmt_, i)))
             : std::string();
  }
  int64_t ColInt(int i) { return sqlite3_column_int64(stmt_, i); }
  bool ColNull(int i) { return sqlite3_column_type(stmt_, i) == SQLITE_NULL; }
  Bytes ColBlob(int i) {
    const auto* b = static_cast<const uint8_t*>(sqlite3_column_blob(stmt_, i));
    return b ? Bytes(b, b + sqlite3_column_bytes(stmt_, i)) : Bytes();
  }
  Error Err(const char* what) const {
    return Error(Layer::kIo, std::string("state store: ") + what + ": " + sqlite3_errmsg(db_));
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
};

Status Done(Stmt& s, const char* what) {
  if (!s.ok()) return s.Err(what);
  if (s.Step() != SQLITE_DONE) return s.Err(what);
  return OkStatus();
}

}  // namespace

std::string_view NonceUseCode(NonceUse use) {
  switch (use) {
    case NonceUse::kOk:
      return "ok";
    case NonceUse::kUnknown:
      return "nonce_unknown";
    case NonceUse::kReplayed:
      return "nonce_replayed";
    case NonceUse::kExpired:
      return "nonce_expired";
    case NonceUse::kWrongIdentity:
      return "nonce_wrong_identity";
  }
  return "nonce_unknown";
}

Result<std::unique_ptr<SqliteStateStore>> SqliteStateStore::Open(const std::string& path) {
  std::unique_ptr<SqliteStateStore> store(new SqliteStateStore());
  store->path_ = path;
  int rc =
      sqlite3_open_v2(path.c_str(), &store->db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    return Error(Layer::kIo, "cannot open state database " + path + ": " +
                                 (store->db_ ? sqlite3_errmsg(store->db_) : "out of memory"));
  }
  sqlite3_busy_timeout(store->db_, 5000);
  WIMSE_RETURN_IF_ERROR(store->Exec(kSchema));
  WIMSE_RETURN_IF_ERROR(store->MigrateNonces());
  return store;
}

SqliteStateStore::~SqliteStateStore() {
  if (db_ != nullptr) sqlite3_close(db_);
}

Status SqliteStateStore::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return Error(Layer::kIo, "state database " + path_ + ": " + msg);
  }
  return OkStatus();
}

Status SqliteStateStore::MigrateNonces() {
  {
    Stmt probe(db_, "SELECT floor_ak FROM nonces LIMIT 0");
    if (probe.ok()) return OkStatus();
  }
  return Exec(
      "ALTER TABLE nonces ADD COLUMN floor_ak BLOB;"
      "ALTER TABLE nonces ADD COLUMN floor_clock INTEGER;"
      "ALTER TABLE nonces ADD COLUMN floor_reset INTEGER;"
      "ALTER TABLE nonces ADD COLUMN floor_restart INTEGER;");
}

Status SqliteStateStore::PutPendingEnrollment(const std::string& id,
                                              const std::string& pending_json, int64_t expires_at) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_, "INSERT INTO pending_enrolments (id, pending, expires_at) VALUES (?, ?, ?)");
  s.Text(1, id).Text(2, pending_json).Int(3, expires_at);
  return Done(s, "storing a pending enrolment");
}

Result<std::optional<std::string>> SqliteStateStore::TakePendingEnrollment(const std::string& id,
                                                                           int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_, "DELETE FROM pending_enrolments WHERE id = ? RETURNING pending, expires_at");
  if (!s.ok()) return s.Err("taking a pending enrolment");
  s.Text(1, id);
  int rc = s.Step();
  if (rc == SQLITE_DONE) return std::optional<std::string>();
  if (rc != SQLITE_ROW) return s.Err("taking a pending enrolment");
  std::string pending = s.ColText(0);
  int64_t expires = s.ColInt(1);
  while (s.Step() == SQLITE_ROW) {
  }
  if (expires < now) return std::optional<std::string>();
  return std::optional<std::string>(std::move(pending));
}

Status SqliteStateStore::PutEnrollment(const attest::EnrollmentRecord& record, int64_t now) {
  attest::EnrollmentRegistry one{{record.identity, record}};
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_,
         "INSERT INTO enrolments (identity, record, ak_name, enrolled_at) VALUES (?, ?, ?, ?) "
         "ON CONFLICT (identity) DO UPDATE SET record = excluded.record, "
         "ak_name = excluded.ak_name, enrolled_at = excluded.enrolled_at");
  s.Text(1, record.identity).Text(2, attest::EncodeRegistry(one)).Blob(3, record.ak_name);
  s.Int(4, now);
  return Done(s, "storing an enrolment");
}

Result<std::optional<attest::EnrollmentRecord>> SqliteStateStore::GetEnrollment(
    const std::string& identity) {
  std::string json;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Stmt s(db_, "SELECT record FROM enrolments WHERE identity = ?");
    if (!s.ok()) return s.Err("reading an enrolment");
    s.Text(1, identity);
    int rc = s.Step();
    if (rc == SQLITE_DONE) return std::optional<attest::EnrollmentRecord>();
    if (rc != SQLITE_ROW) return s.Err("reading an enrolment");
    json = s.ColText(0);
  }
  WIMSE_ASSIGN_OR_RETURN(auto registry, attest::DecodeRegistry(json));
  auto it = registry.find(identity);
  if (it == registry.end()) {
    return Error(Layer::kInternal, "state store: enrolment record of " + identity + " is corrupt");
  }
  return std::optional<attest::EnrollmentRecord>(it->second);
}

Result<uint64_t> SqliteStateStore::CountEnrollments() {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_, "SELECT COUNT(*) FROM enrolments");
  if (!s.ok() || s.Step() != SQLITE_ROW) return s.Err("counting enrolments");
  return static_cast<uint64_t>(s.ColInt(0));
}

Status SqliteStateStore::PutNonce(ByteView nonce, const std::string& identity, int64_t issued_at,
                                  int64_t expires_at) {
  std::lock_guard<std::mutex> lock(mu_);
  // One statement: the enrolled AK and its clock state are read as the nonce is inserted.
  Stmt s(db_,
         "INSERT INTO nonces (nonce, identity, issued_at, expires_at, floor_ak, floor_clock, "
         "floor_reset, floor_restart) "
         "SELECT ?1, ?2, ?3, ?4, e.ak_name, c.clock, c.reset_count, c.restart_count "
         "FROM (SELECT 1) LEFT JOIN enrolments e ON e.identity = ?2 "
         "LEFT JOIN ak_clocks c ON c.ak_name = e.ak_name");
  s.Blob(1, nonce).Text(2, identity).Int(3, issued_at).Int(4, expires_at);
  return Done(s, "storing a nonce");
}

Result<NonceUse> SqliteStateStore::ConsumeNonce(ByteView nonce, const std::string& identity,
                                                int64_t now, NonceRecord* record) {
  std::lock_guard<std::mutex> lock(mu_);
  {
    // The single-use decision is this one statement: only one caller can flip `used`.
    Stmt s(db_,
           "UPDATE nonces SET used = 1 WHERE nonce = ? AND used = 0 AND identity = ? AND "
           "expires_at >= ? RETURNING issued_at, floor_ak, floor_clock, floor_reset, "
           "floor_restart");
    if (!s.ok()) return s.Err("consuming a nonce");
    s.Blob(1, nonce).Text(2, identity).Int(3, now);
    int rc = s.Step();
    if (rc == SQLITE_ROW) {
      if (record != nullptr) {
        *record = NonceRecord{};
        record->issued_at = s.ColInt(0);
        record->ak_name = s.ColBlob(1);
        if (!s.ColNull(2)) {
          record->clock_floor = attest::ClockState{static_cast<uint64_t>(s.ColInt(2)),
                                                   static_cast<uint32_t>(s.ColInt(3)),
                                                   static_cast<uint32_t>(s.ColInt(4))};
        }
      }
      while (s.Step() == SQLITE_ROW) {
      }
      return NonceUse::kOk;
    }
    if (rc != SQLITE_DONE) return s.Err("consuming a nonce");
  }
  Stmt q(db_, "SELECT identity, expires_at, used FROM nonces WHERE nonce = ?");
  if (!q.ok()) return q.Err("reading a nonce");
  q.Blob(1, nonce);
  int rc = q.Step();
  if (rc == SQLITE_DONE) return NonceUse::kUnknown;
  if (rc != SQLITE_ROW) return q.Err("reading a nonce");
  if (q.ColInt(2) != 0) return NonceUse::kReplayed;
  if (q.ColText(0) != identity) return NonceUse::kWrongIdentity;
  return NonceUse::kExpired;
}

Result<std::optional<attest::ClockState>> SqliteStateStore::GetClock(ByteView ak_name) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_, "SELECT clock, reset_count, restart_count FROM ak_clocks WHERE ak_name = ?");
  if (!s.ok()) return s.Err("reading an AK clock");
  s.Blob(1, ak_name);
  int rc = s.Step();
  if (rc == SQLITE_DONE) return std::optional<attest::ClockState>();
  if (rc != SQLITE_ROW) return s.Err("reading an AK clock");
  attest::ClockState c;
  c.clock = static_cast<uint64_t>(s.ColInt(0));
  c.reset_count = static_cast<uint32_t>(s.ColInt(1));
  c.restart_count = static_cast<uint32_t>(s.ColInt(2));
  return std::optional<attest::ClockState>(c);
}

Status SqliteStateStore::RaiseClock(ByteView ak_name, const attest::ClockState& clock) {
  std::lock_guard<std::mutex> lock(mu_);
  // Row values compare lexicographically: (reset, restart, clock) is the order in which a TPM
  // moves (a reset zeroes restartCount; within one boot the clock only advances).
  Stmt s(db_,
         "INSERT INTO ak_clocks (ak_name, clock, reset_count, restart_count) VALUES (?, ?, ?, ?) "
         "ON CONFLICT (ak_name) DO UPDATE SET clock = excluded.clock, "
         "reset_count = excluded.reset_count, restart_count = excluded.restart_count "
         "WHERE (excluded.reset_count, excluded.restart_count, excluded.clock) > "
         "(ak_clocks.reset_count, ak_clocks.restart_count, ak_clocks.clock)");
  s.Blob(1, ak_name).Int(2, static_cast<int64_t>(clock.clock)).Int(3, clock.reset_count);
  s.Int(4, clock.restart_count);
  return Done(s, "raising an AK clock");
}

Status SqliteStateStore::RecordIssued(const IssuedCredential& c) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_,
         "INSERT INTO issued (serial, identity, identifier, key_thumbprint, wit_sha256, "
         "issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)");
  s.Text(1, c.serial_hex).Text(2, c.identity).Text(3, c.identifier).Text(4, c.key_thumbprint);
  s.Text(5, c.wit_sha256).Int(6, c.issued_at).Int(7, c.expires_at);
  return Done(s, "recording an issued credential");
}

Result<uint64_t> SqliteStateStore::CountIssued() {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_, "SELECT COUNT(*) FROM issued");
  if (!s.ok() || s.Step() != SQLITE_ROW) return s.Err("counting issued credentials");
  return static_cast<uint64_t>(s.ColInt(0));
}

Result<uint64_t> SqliteStateStore::PurgeExpired(int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t removed = 0;
  for (const char* sql : {"DELETE FROM nonces WHERE expires_at < ?",
                          "DELETE FROM pending_enrolments WHERE expires_at < ?"}) {
    Stmt s(db_, sql);
    s.Int(1, now);
    WIMSE_RETURN_IF_ERROR(Done(s, "purging expired state"));
    removed += static_cast<uint64_t>(sqlite3_changes(db_));
  }
  return removed;
}

}  // namespace wimse::service
