// Tamper-evident audit log (WIMSE architecture 3.3.4): one JSON object per line, hash-chained.
//
// Every record carries `seq` (1, 2, ...), `prev` (the `hash` of the record before it, 64 zero
// hex digits for the first) and `hash` = hex SHA-256 of the record's canonical serialisation
// without `hash` (compact, members sorted). Editing a record breaks its own hash; deleting,
// inserting or reordering records breaks `seq` and `prev` of the first record after the change.
// Truncation at the end is caught by the optional head file (`<log>.head`: the last seq and hash,
// rewritten atomically after every append).
//
// What goes in: time, event, source and target identifiers, authentication method, decision,
// reason, security-context claims, delegation data, SHA-256 of tokens. Never tokens, keys or
// auth values: Append() replaces any string that looks like a compact JWS with
// "sha256:<hex>" of it, as a last line of defence.
#ifndef WIMSE_AUDIT_AUDIT_LOG_H_
#define WIMSE_AUDIT_AUDIT_LOG_H_

#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "jose/json.h"
#include "util/result.h"
#include "wimse/token_audit.h"

namespace wimse::audit {

// One event. Strings may be empty (then omitted from the record).
struct AuditEvent {
  std::string event;     // "issuance", "validation", "enrolment", "challenge", "call", ...
  std::string source;    // who acted (workload identifier, host identity, peer address)
  std::string target;    // what was acted on (audience, identifier issued, path)
  std::string method;    // authentication method: "mtls", "wit+wpt", "mtls+wit+wpt", "tpm-ak"...
  std::string decision;  // "allow" / "deny"
  std::string reason;    // why (always set on deny)
  jose::Json claims = jose::Json::object();         // security-context claims (no secrets)
  jose::Json delegation = jose::Json::object();     // delegation data if any
  std::map<std::string, std::string> token_sha256;  // token kind -> lower-case hex SHA-256
};

// Lower-case hex SHA-256 of `token` (for AuditEvent::token_sha256).
std::string TokenSha256Hex(std::string_view token);

struct AuditLogOptions {
  std::string path;        // the JSON-lines file (created 0600 if missing); "" = none
  bool write_head = true;  // maintain `<path>.head`
  FILE* siem = nullptr;    // also write every record line here (e.g. stdout); borrowed
  bool sync = false;       // fdatasync after every record
};

// An append-only, hash-chained log. Thread-safe (one mutex); several processes may append to
// the same file: each append takes an exclusive flock and continues from the file's last record.
class AuditLog {
 public:
  // Opens (creating if missing) and reads the tail of an existing log to continue its chain.
  // The existing content is not verified here (use VerifyAuditLog). Errors: I/O, a last line
  // that is not a record.
  static Result<std::unique_ptr<AuditLog>> Open(const AuditLogOptions& options);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends one record stamped with the current time (or `now_unix` if non-zero). Returns the
  // record as written (with seq, prev, hash).
  Result<jose::Json> Append(const AuditEvent& event, int64_t now_unix = 0);

  // Number of records appended by this process.
  uint64_t appended() const;

 private:
  explicit AuditLog(AuditLogOptions options) : options_(std::move(options)) {}
  Status ReadTailLocked();
  AuditLogOptions options_;
  mutable std::mutex mu_;
  int fd_ = -1;
  uint64_t seq_ = 0;
  std::string last_hash_;
  int64_t known_size_ = -1;
  uint64_t appended_ = 0;
};

// The canonical hash of a record (its members other than "hash"), lower-case hex.
std::string RecordHash(const jose::Json& record);

// Result of verifying a log.
struct AuditVerifyResult {
  bool ok = false;
  uint64_t records = 0;         // records read
  uint64_t first_bad_line = 0;  // 1-based line of the first bad record (0 when ok)
  std::string reason;           // why it is bad
  std::string last_hash;        // hash of the last good record
};

// Verifies the chain of the log at `path` and its head file `<path>.head`: names the first
// line whose record was edited, inserted, deleted before, or moved, and catches records cut off
// the end through the head. A missing head file fails verification (deleting it would hide a
// truncation) unless `require_head` is false. The chain has no key: it shows tampering by
// anyone who cannot also rewrite the head and every later record consistently, so ship records
// off the host (stdout JSON lines to a SIEM) for a copy out of an attacker's reach. Errors only
// for I/O.
Result<AuditVerifyResult> VerifyAuditLog(const std::string& path, bool require_head = true);
// Verifies log text (no head file check).
AuditVerifyResult VerifyAuditText(std::string_view text);

// A TokenAuditSink that appends one "validation" record per token verification decision.
class TokenAuditLogSink : public TokenAuditSink {
 public:
  // `log` is borrowed and must outlive the sink. `verifier` names the verifying party.
  TokenAuditLogSink(AuditLog* log, std::string verifier)
      : log_(log), verifier_(std::move(verifier)) {}
  void Record(const TokenAuditRecord& record) override;

 private:
  AuditLog* log_;
  std::string verifier_;
};

}  // namespace wimse::audit

#endif  // WIMSE_AUDIT_AUDIT_LOG_H_
