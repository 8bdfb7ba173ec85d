#include "audit/audit_log.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <regex>

#include "crypto/signer.h"
#include "util/bytes.h"
#include "util/file.h"

namespace wimse::audit {

namespace {

constexpr char kZeroHash[] = "0000000000000000000000000000000000000000000000000000000000000000";
constexpr size_t kMaxLine = 64 * 1024;

std::string Iso8601(int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// A compact JWS/JWT: three base64url segments, the first two non-trivial.
bool LooksLikeJws(const std::string& s) {
  static const std::regex kJws("[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]*");
  return s.size() >= 40 && std::regex_search(s, kJws);
}

// Replaces token-looking strings anywhere in `v` with their hash.
void Scrub(jose::Json& v) {
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    if (LooksLikeJws(s)) v = "sha256:" + TokenSha256Hex(s);
  } else if (v.is_object() || v.is_array()) {
    for (auto& item : v) Scrub(item);
  }
}

class FileLock {
 public:
  explicit FileLock(int fd) : fd_(fd) { locked_ = fd_ >= 0 && ::flock(fd_, LOCK_EX) == 0; }
  ~FileLock() {
    if (locked_) ::flock(fd_, LOCK_UN);
  }
  bool locked() const { return locked_; }

 private:
  int fd_;
  bool locked_ = false;
};

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error(Layer::kIo, std::string("audit log write failed: ") + std::strerror(errno));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return OkStatus();
}

}  // namespace

std::string TokenSha256Hex(std::string_view token) {
  auto d = Digest(HashAlg::kSha256, AsBytes(token));
  return d.ok() ? HexEncode(*d) : std::string();
}

std::string RecordHash(const jose::Json& record) {
  jose::Json copy = record;
  if (copy.is_object()) copy.erase("hash");
  return TokenSha256Hex(jose::SerializeJson(copy));
}

Result<std::unique_ptr<AuditLog>> AuditLog::Open(const AuditLogOptions& options) {
  std::unique_ptr<AuditLog> log(new AuditLog(options));
  log->last_hash_ = kZeroHash;
  if (!options.path.empty()) {
    log->fd_ = ::open(options.path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log->fd_ < 0) {
      return Error(Layer::kIo,
                   "cannot open audit log " + options.path + ": " + std::strerror(errno));
    }
    std::lock_guard<std::mutex> lock(log->mu_);
    FileLock flock(log->fd_);
    WIMSE_RETURN_IF_ERROR(log->ReadTailLocked());
  }
  return log;
}

AuditLog::~AuditLog() {
  if (fd_ >= 0) ::close(fd_);
}

uint64_t AuditLog::appended() const {
  std::lock_guard<std::mutex> lock(mu_);
  return appended_;
}

// Reads the last line of the file to find the chain position (another process may have
// appended since our last write).
Status AuditLog::ReadTailLocked() {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return Error(Layer::kIo, "cannot stat audit log " + options_.path);
  if (st.st_size == known_size_) return OkStatus();
  seq_ = 0;
  last_hash_ = kZeroHash;
  if (st.st_size > 0) {
    off_t start = st.st_size > static_cast<off_t>(kMaxLine) ? st.st_size - kMaxLine : 0;
    std::string tail(static_cast<size_t>(st.st_size - start), '\0');
    ssize_t n = ::pread(fd_, tail.data(), tail.size(), start);
    if (n != static_cast<ssize_t>(tail.size())) {
      return Error(Layer::kIo, "cannot read audit log " + options_.path);
    }
    while (!tail.empty() && tail.back() == '\n') tail.pop_back();
    size_t nl = tail.rfind('\n');
    std::string last = nl == std::string::npos ? tail : tail.substr(nl + 1);
    auto rec = jose::ParseJsonObject(last, {kMaxLine, 16});
    if (!rec.ok() || !(*rec)["seq"].is_number_unsigned() || !(*rec)["hash"].is_string()) {
      return Error(Layer::kParse, "audit log " + options_.path + ": last line is not a record");
    }
    seq_ = (*rec)["seq"].get<uint64_t>();
    last_hash_ = (*rec)["hash"].get<std::string>();
  }
  known_size_ = st.st_size;
  return OkStatus();
}

Result<jose::Json> AuditLog::Append(const AuditEvent& event, int64_t now_unix) {
  if (now_unix == 0) now_unix = static_cast<int64_t>(std::time(nullptr));
  jose::Json r = jose::Json::object();
  r["ts"] = now_unix;
  r["time"] = Iso8601(now_unix);
  auto put = [&](const char* name, const std::string& v) {
    if (!v.empty()) r[name] = v;
  };
  put("event", event.event);
  put("source", event.source);
  put("target", event.target);
  put("method", event.method);
  put("decision", event.decision);
  put("reason", event.reason);
  if (event.claims.is_object() && !event.claims.empty()) r["claims"] = event.claims;
  if (event.delegation.is_object() && !event.delegation.empty()) {
    r["delegation"] = event.delegation;
  }
  if (!event.token_sha256.empty()) {
    jose::Json t = jose::Json::object();
    for (const auto& [k, v] : event.token_sha256) t[k] = v;
    r["token_sha256"] = t;
  }
  Scrub(r);

  std::lock_guard<std::mutex> lock(mu_);
  FileLock flock(fd_);
  if (fd_ >= 0) {
    if (!flock.locked()) return Error(Layer::kIo, "cannot lock audit log " + options_.path);
    WIMSE_RETURN_IF_ERROR(ReadTailLocked());
  }
  r["seq"] = seq_ + 1;
  r["prev"] = last_hash_;
  r["hash"] = RecordHash(r);
  std::string line = jose::SerializeJson(r) + "\n";
  if (fd_ >= 0) {
    WIMSE_RETURN_IF_ERROR(WriteAll(fd_, line));
    if (options_.sync) ::fdatasync(fd_);
    known_size_ += static_cast<int64_t>(line.size());
    if (options_.write_head) {
      jose::Json head = {{"seq", seq_ + 1}, {"hash", r["hash"]}};
      WIMSE_RETURN_IF_ERROR(
          WriteFileAtomic(options_.path + ".head", jose::SerializeJson(head) + "\n", 0600));
    }
  }
  seq_ += 1;
  last_hash_ = r["hash"].get<std::string>();
  ++appended_;
  if (options_.siem != nullptr) {
    std::fwrite(line.data(), 1, line.size(), options_.siem);
    std::fflush(options_.siem);
  }
  return r;
}

AuditVerifyResult VerifyAuditText(std::string_view text) {
  AuditVerifyResult res;
  std::string prev = kZeroHash;
  uint64_t line_no = 0;
  auto bad = [&](std::string why) {
    res.ok = false;
    res.first_bad_line = line_no;
    res.reason = std::move(why);
    return res;
  };
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (line.empty()) return bad("empty line (a record was removed or the file was edited)");
    auto rec = jose::ParseJsonObject(line, {kMaxLine, 16});
    if (!rec.ok()) return bad("not a JSON record: " + rec.error().message());
    const jose::Json& r = *rec;
    if (!r.contains("seq") || !r["seq"].is_number_unsigned() || !r.contains("prev") ||
        !r["prev"].is_string() || !r.contains("hash") || !r["hash"].is_string()) {
      return bad("record lacks seq, prev or hash");
    }
    uint64_t seq = r["seq"].get<uint64_t>();
    if (RecordHash(r) != r["hash"].get<std::string>()) {
      return bad("record " + std::to_string(seq) + " was edited (its hash does not match)");
    }
    if (seq != res.records + 1) {
      return bad("sequence " + std::to_string(seq) + " where " + std::to_string(res.records + 1) +
                 " was expected (a record was inserted, deleted or moved)");
    }
    if (r["prev"].get<std::string>() != prev) {
      return bad("record " + std::to_string(seq) +
                 " does not follow the previous record (chain broken: inserted, deleted or "
                 "moved records)");
    }
    prev = r["hash"].get<std::string>();
    res.records = seq;
  }
  res.ok = true;
  res.last_hash = prev;
  return res;
}

Result<AuditVerifyResult> VerifyAuditLog(const std::string& path, bool require_head) {
  WIMSE_ASSIGN_OR_RETURN(std::string text, ReadFileString(path, size_t{1} << 31));
  AuditVerifyResult res = VerifyAuditText(text);
  if (!res.ok) return res;
  auto head_text = ReadFileString(path + ".head", 4096);
  if (!head_text.ok() && require_head && res.records > 0) {
    res.ok = false;
    res.first_bad_line = res.records + 1;
    res.reason = "head file " + path +
                 ".head is missing or unreadable: records removed from "
                 "the end could not be detected (--allow-missing-head to check the chain alone)";
    return res;
  }
  if (head_text.ok()) {
    auto head = jose::ParseJsonObject(*head_text);
    if (!head.ok() || !(*head)["seq"].is_number_unsigned() || !(*head)["hash"].is_string()) {
      res.ok = false;
      res.first_bad_line = res.records + 1;
      res.reason = "head file " + path + ".head is malformed";
      return res;
    }
    uint64_t hseq = (*head)["seq"].get<uint64_t>();
    if (hseq != res.records || (*head)["hash"].get<std::string>() != res.last_hash) {
      res.ok = false;
      res.first_bad_line = std::min(hseq, res.records) + 1;
      res.reason = "the head file records " + std::to_string(hseq) + " records ending in " +
                   (*head)["hash"].get<std::string>().substr(0, 16) + "..., the log has " +
                   std::to_string(res.records) + " (records removed from the end or appended)";
    }
  }
  return res;
}

void TokenAuditLogSink::Record(const TokenAuditRecord& record) {
  AuditEvent e;
  e.event = "validation";
  e.source = record.sub;
  e.target = record.aud.empty() ? verifier_ : record.aud;
  e.method = record.kind;
  e.decision = record.accepted ? "allow" : "deny";
  e.reason = record.reason;
  e.claims = {{"verifier", verifier_}};
  if (!record.token_sha256.empty()) e.token_sha256[record.kind] = record.token_sha256;
  (void)log_->Append(e, record.time);
}

}  // namespace wimse::audit
