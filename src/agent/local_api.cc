#include "agent/local_api.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace wimse::agent {

namespace {

constexpr size_t kMaxRequest = 8192;

Result<sockaddr_un> Address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return Error(Layer::kUsage, "socket path too long: " + path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

bool ReadLine(int fd, std::string& line, int timeout_ms) {
  char buf[1024];
  while (line.find('\n') == std::string::npos) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) return !line.empty();
    line.append(buf, static_cast<size_t>(n));
    if (line.size() > kMaxRequest * 8) return false;
  }
  line.resize(line.find('\n'));
  return true;
}

void WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

}  // namespace

LocalApiServer::~LocalApiServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
}

Status LocalApiServer::Start() {
  WIMSE_ASSIGN_OR_RETURN(sockaddr_un addr, Address(path_));
  ::unlink(path_.c_str());
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return Error(Layer::kIo, "socket(AF_UNIX) failed");
  mode_t old = ::umask(0177);
  int rc = ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::umask(old);
  if (rc != 0 || ::listen(fd_, 64) != 0) {
    return Error(Layer::kIo, "cannot listen on " + path_ + ": " + std::strerror(errno));
  }
  thread_ = std::thread([this] { Serve(); });
  return OkStatus();
}

void LocalApiServer::Serve() {
  while (!stop_.load()) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    int conn = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;
    std::string line;
    jose::Json answer;
    if (!ReadLine(conn, line, 2000)) {
      answer = {{"error", "request_malformed: no request line"}};
    } else {
      answer = Handle(line);
    }
    WriteAll(conn, jose::SerializeJson(answer) + "\n");
    ::close(conn);
  }
}

jose::Json LocalApiServer::Handle(const std::string& line) {
  auto req = jose::ParseJsonObject(line, {kMaxRequest, 4});
  if (!req.ok()) return {{"error", "request_malformed: " + req.error().message()}};
  std::string op = req->value("op", std::string());
  if (op == "credentials") {
    auto c = agent_->Current();
    if (!c.ok()) return {{"error", c.error().message()}};
    return {{"identifier", c->identifier},       {"wit", c->wit},
            {"certificate", c->certificate_pem}, {"bundle", c->bundle_pem},
            {"expires_at", c->expires_at},       {"wit_expires_at", c->wit_expires_at}};
  }
  if (op == "wpt") {
    auto aud = req->find("aud");
    if (aud == req->end() || !aud->is_string()) return {{"error", "request_malformed: aud"}};
    int64_t ttl = 60;
    if (auto t = req->find("ttl"); t != req->end() && t->is_number_integer()) {
      ttl = t->get<int64_t>();
    }
    auto wpt = agent_->SignWpt(aud->get<std::string>(), ttl);
    if (!wpt.ok()) return {{"error", wpt.error().ToString()}};
    return {{"wpt", *wpt}};
  }
  if (op == "status") {
    auto c = agent_->Current();
    jose::Json j = {{"service_reachable", agent_->service_reachable()},
                    {"next_attempt_at", agent_->next_attempt_at()}};
    if (c.ok()) {
      j["identifier"] = c->identifier;
      j["expires_at"] = c->expires_at;
    } else {
      j["credentials"] = c.error().message();
    }
    return j;
  }
  return {{"error", "unknown op \"" + op + "\""}};
}

Result<jose::Json> CallLocalApi(const std::string& path, const jose::Json& request) {
  WIMSE_ASSIGN_OR_RETURN(sockaddr_un addr, Address(path));
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error(Layer::kIo, "socket(AF_UNIX) failed");
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return Error(Layer::kIo, "agent socket " + path + ": " + std::strerror(errno));
  }
  WriteAll(fd, jose::SerializeJson(request) + "\n");
  std::string line;
  bool ok = ReadLine(fd, line, 30000);
  ::close(fd);
  if (!ok) return Error(Layer::kIo, "no answer from the agent at " + path);
  WIMSE_ASSIGN_OR_RETURN(jose::Json j, jose::ParseJsonObject(line, {1 << 20, 4}));
  if (j.contains("error")) {
    return Error(Layer::kPolicy, "agent: " + j["error"].get<std::string>());
  }
  return j;
}

}  // namespace wimse::agent
