#include "tpm/tcti.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <tss2/tss2_tctildr.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <set>
#include <string_view>
#include <thread>
#include <vector>

namespace wimse::tpm {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint64_t kMagic = 0x77696d7365737774ULL;  // "wimseswt"
constexpr size_t kHeaderSize = 10;                  // tag, size, code (Part 1 §18)
// swtpm's I/O buffer (and tpm2-tss's command/response buffers) are 4,096 bytes.
constexpr size_t kMaxMessage = 4096;
constexpr int kDefaultIdleMs = 5;
constexpr int kMaxIdleMs = 60000;
constexpr int kConnectTimeoutMs = 10000;
constexpr int kDefaultResponseTimeoutMs = 120000;
constexpr int kMaxResponseTimeoutMs = 3600000;

struct Address {
  sockaddr_storage storage{};
  socklen_t length = 0;
};

struct Transport;

// What ESAPI sees: the common TCTI header (must come first) and a pointer to our state, so the
// struct stays standard-layout whatever the state holds.
struct TctiShim {
  TSS2_TCTI_CONTEXT_COMMON_V2 common;
  Transport* self;
};

struct Transport {
  TctiShim shim{};
  std::vector<Address> addresses;  // tried in order
  std::string endpoint;            // for error texts: "127.0.0.1:2321" or a socket path
  int idle_ms = kDefaultIdleMs;
  int response_timeout_ms = kDefaultResponseTimeoutMs;
  pid_t owner = 0;

  std::mutex mu;  // guards everything below; never held during socket I/O
  std::condition_variable cv;
  int fd = -1;
  bool awaiting_response = false;  // between transmit and the end of receive
  bool stop = false;
  Clock::time_point last_use;
  std::thread* closer = nullptr;
  IdleHook hook = nullptr;  // called before an idle close (SetIdleHook)
  void* hook_arg = nullptr;
  bool hook_running = false;  // no reconnecting while the hook runs
  TransportStats stats;

  // Response being read (receive may return TRY_AGAIN part way and be called again).
  uint8_t response[kMaxMessage];
  size_t got = 0;
};

// Live transports of this process, for the fork handlers.
std::mutex& RegistryMutex() {
  static auto* mu = new std::mutex();
  return *mu;
}
std::set<Transport*>& Registry() {
  static auto* transports = new std::set<Transport*>();
  return *transports;
}

// fork(): the child must not keep the parent's connection alive. swtpm serves one connection
// at a time, so an inherited descriptor would hold the parent's connection open after the
// parent closes it, and every later client (the child's own new connection included) would
// wait forever. The handlers lock every transport so the child's copy is consistent, and close
// the child's descriptors. The child's closer thread does not exist; its transport is abandoned.
void PrepareFork() {
  RegistryMutex().lock();
  for (Transport* t : Registry()) t->mu.lock();
}
void ParentAfterFork() {
  for (Transport* t : Registry()) t->mu.unlock();
  RegistryMutex().unlock();
}
void ChildAfterFork() {
  for (Transport* t : Registry()) {
    if (t->fd >= 0) close(t->fd);
    t->fd = -1;
    t->closer = nullptr;  // the thread stayed in the parent; its object is abandoned
    t->awaiting_response = false;
    t->mu.unlock();
  }
  RegistryMutex().unlock();
}

Transport* From(TSS2_TCTI_CONTEXT* ctx) {
  if (ctx == nullptr) return nullptr;
  auto* shim = reinterpret_cast<TctiShim*>(ctx);
  if (shim->common.v1.magic != kMagic) return nullptr;
  return shim->self;
}

void CloseLocked(Transport* t) {
  if (t->fd >= 0) close(t->fd);
  t->fd = -1;
  t->awaiting_response = false;
  t->got = 0;
}

void CloserLoop(Transport* t) {
  std::unique_lock<std::mutex> lock(t->mu);
  const auto idle = std::chrono::milliseconds(t->idle_ms);
  while (!t->stop) {
    if (t->fd < 0) {
      t->cv.wait(lock);
      continue;
    }
    auto now = Clock::now();
    if (!t->awaiting_response && now >= t->last_use + idle) {
      if (t->hook != nullptr) {
        // The hook's own commands go through Transmit/Receive and take the lock themselves.
        IdleHook hook = t->hook;
        void* arg = t->hook_arg;
        t->hook_running = true;
        lock.unlock();
        bool may_close = hook(arg);
        auto after_hook = Clock::now();
        lock.lock();
        t->hook_running = false;
        if (t->stop || t->fd < 0) continue;
        if (!may_close) {
          // The owner is inside an operation (between two of its commands): keep the
          // connection, and its objects with it, and ask again after another idle period.
          t->cv.wait_until(lock, after_hook + idle);
          continue;
        }
        // A command that started or finished after the hook: the connection is in use again.
        if (t->awaiting_response || t->last_use > after_hook) continue;
      }
      CloseLocked(t);
      ++t->stats.idle_closes;
      continue;
    }
    t->cv.wait_until(lock, t->awaiting_response ? now + idle : t->last_use + idle);
  }
}

std::string ErrnoText(const char* what, int err) {
  return std::string(what) + ": " + std::strerror(err);
}

// Connects `fd` to `a` within kConnectTimeoutMs (a host that drops packets would otherwise
// block for minutes). Returns 0 or an errno value.
int ConnectWithin(int fd, const Address& a) {
  int flags = fcntl(fd, F_GETFL, 0);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return errno;
  int err = 0;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&a.storage), a.length) != 0) {
    err = errno;
    if (err == EINPROGRESS || err == EINTR) {
      auto deadline = Clock::now() + std::chrono::milliseconds(kConnectTimeoutMs);
      pollfd p{fd, POLLOUT, 0};
      err = ETIMEDOUT;
      for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) break;
        int n = poll(&p, 1, static_cast<int>(left.count()));
        if (n < 0 && errno == EINTR) continue;
        if (n > 0) {
          socklen_t len = sizeof(err);
          if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        } else if (n < 0) {
          err = errno;
        }
        break;
      }
    }
  }
  if (err == 0 && fcntl(fd, F_SETFL, flags) < 0) err = errno;
  return err;
}

// Starts the idle-close thread (once per transport). A library thread must never take the
// application's signals: a process that blocks SIGTERM in its threads and waits for it with
// sigwait() would otherwise be killed by the default action when the kernel picks this thread
// (and exit without its exit handlers, which flush the loaded keys). If no thread can be made
// (thread limit), the transport closes after every response instead, like tpm2-tss's.
void StartCloserLocked(Transport* t) {
  if (t->idle_ms <= 0 || t->closer != nullptr) return;
  sigset_t all;
  sigset_t previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  try {
    t->closer = new std::thread(CloserLoop, t);
  } catch (...) {
    t->closer = nullptr;
    t->idle_ms = 0;
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
}

// Connects to the first address that accepts. Called with t->mu held and returns with it held,
// but releases it while connecting, so a slow connect never stalls fork() (PrepareFork) or the
// closer. The socket is published in t->fd (marked busy) before connect() so that a fork in
// the meantime closes the child's copy.
TSS2_RC ConnectLocked(Transport* t, std::unique_lock<std::mutex>& lock) {
  int last_errno = 0;
  for (const Address& a : t->addresses) {
    int fd = socket(a.storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last_errno = errno;
      continue;
    }
    t->fd = fd;
    t->awaiting_response = true;  // busy: the closer leaves it alone
    lock.unlock();
    int err = ConnectWithin(fd, a);
    lock.lock();
    t->awaiting_response = false;
    if (err != 0) {
      last_errno = err;
      CloseLocked(t);
      continue;
    }
    if (a.storage.ss_family != AF_UNIX) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    timeval limit{};
    limit.tv_sec = t->response_timeout_ms / 1000;
    limit.tv_usec = (t->response_timeout_ms % 1000) * 1000;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
    t->last_use = Clock::now();
    ++t->stats.connections;
    StartCloserLocked(t);
    t->cv.notify_all();
    return TSS2_RC_SUCCESS;
  }
  ++t->stats.errors;
  t->stats.last_error = ErrnoText(("connect to " + t->endpoint).c_str(), last_errno);
  return TSS2_TCTI_RC_IO_ERROR;
}

// True if the server has not closed the connection (nothing is ever unsolicited, so readable
// means end of file or a reset: swtpm restarted or dropped us).
bool StillOpen(int fd) {
  uint8_t b;
  ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

bool SendAll(int fd, const uint8_t* data, size_t size, int* err) {
  while (size > 0) {
    ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

TSS2_RC Transmit(TSS2_TCTI_CONTEXT* ctx, size_t size, const uint8_t* command) {
  Transport* t = From(ctx);
  if (t == nullptr) return TSS2_TCTI_RC_BAD_CONTEXT;
  if (command == nullptr) return TSS2_TCTI_RC_BAD_REFERENCE;
  if (size < kHeaderSize || size > kMaxMessage || BigEndian32(command + 2) != size) {
    return TSS2_TCTI_RC_BAD_VALUE;
  }
  std::unique_lock<std::mutex> lock(t->mu);
  if (t->owner != getpid()) return TSS2_TCTI_RC_BAD_CONTEXT;  // a fork child's copy
  if (t->awaiting_response) return TSS2_TCTI_RC_BAD_SEQUENCE;
  if (t->fd >= 0 && !StillOpen(t->fd)) CloseLocked(t);
  if (t->fd < 0 && t->hook_running) {
    // The idle hook acts on the objects of the connection it was called for; on a new one
    // they may be someone else's.
    ++t->stats.errors;
    t->stats.last_error = "connection to " + t->endpoint + " lost before the idle release";
    return TSS2_TCTI_RC_IO_ERROR;
  }
  if (t->fd < 0) {
    TSS2_RC rc = ConnectLocked(t, lock);
    if (rc != TSS2_RC_SUCCESS) return rc;
  }
  int fd = t->fd;
  t->awaiting_response = true;  // the closer leaves the connection alone from here
  t->got = 0;
  lock.unlock();
  int err = 0;
  bool sent = SendAll(fd, command, size, &err);
  lock.lock();
  if (!sent) {
    ++t->stats.errors;
    t->stats.last_error = ErrnoText(("send to " + t->endpoint).c_str(), err);
    CloseLocked(t);
    return TSS2_TCTI_RC_IO_ERROR;
  }
  ++t->stats.commands;
  return TSS2_RC_SUCCESS;
}

// Waits until fd is readable or `deadline` passes (false). Without a deadline (the caller's
// timeout is TSS2_TCTI_TIMEOUT_BLOCK) recv blocks instead.
bool WaitReadable(int fd, const std::optional<Clock::time_point>& deadline) {
  if (!deadline) return true;
  pollfd p{fd, POLLIN, 0};
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - Clock::now());
    int n = poll(&p, 1, left.count() > 0 ? static_cast<int>(left.count()) : 0);
    if (n < 0 && errno == EINTR) continue;
    return n != 0;  // an error shows up in recv
  }
}

TSS2_RC Receive(TSS2_TCTI_CONTEXT* ctx, size_t* size, uint8_t* response, int32_t timeout) {
  Transport* t = From(ctx);
  if (t == nullptr) return TSS2_TCTI_RC_BAD_CONTEXT;
  if (size == nullptr) return TSS2_TCTI_RC_BAD_REFERENCE;
  if (timeout < TSS2_TCTI_TIMEOUT_BLOCK) return TSS2_TCTI_RC_BAD_VALUE;
  std::unique_lock<std::mutex> lock(t->mu);
  if (!t->awaiting_response || t->fd < 0) return TSS2_TCTI_RC_BAD_SEQUENCE;
  int fd = t->fd;
  size_t got = t->got;
  lock.unlock();
  std::optional<Clock::time_point> deadline;
  // A blocking receive still has a limit (SO_RCVTIMEO, set at connect: no extra system call
  // per response): a peer that accepted the connection but never answers (a hung or impostor
  // endpoint) would otherwise hold the caller, and the context lock with it, forever. The
  // limit is far beyond any swtpm command (RSA-3072 key generation takes seconds).
  if (timeout != TSS2_TCTI_TIMEOUT_BLOCK) {
    deadline = Clock::now() + std::chrono::milliseconds(timeout);
  }

  // One response is in flight and swtpm sends nothing else, so one recv of up to the buffer
  // size normally returns all of it.
  TSS2_RC failure = TSS2_RC_SUCCESS;
  std::string why;
  size_t expected = 0;
  for (;;) {
    if (got >= kHeaderSize) {
      expected = BigEndian32(t->response + 2);
      if (expected < kHeaderSize || expected > kMaxMessage || got > expected) {
        failure = TSS2_TCTI_RC_MALFORMED_RESPONSE;
        why = "malformed response from " + t->endpoint;
        break;
      }
      if (got == expected) break;
    }
    if (!WaitReadable(fd, deadline)) {
      lock.lock();
      t->got = got;
      return TSS2_TCTI_RC_TRY_AGAIN;  // still awaiting: call again
    }
    ssize_t n = recv(fd, t->response + got, kMaxMessage - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {  // SO_RCVTIMEO expired
      failure = TSS2_TCTI_RC_IO_ERROR;
      why = "no response from " + t->endpoint + " within " +
            std::to_string(t->response_timeout_ms) + " ms (WIMSE_SWTPM_TIMEOUT_MS)";
      break;
    }
    if (n <= 0) {
      failure = TSS2_TCTI_RC_IO_ERROR;
      why = n == 0 ? "connection to " + t->endpoint + " closed by the TPM"
                   : ErrnoText(("recv from " + t->endpoint).c_str(), errno);
      break;
    }
    got += static_cast<size_t>(n);
  }

  lock.lock();
  if (failure != TSS2_RC_SUCCESS) {
    ++t->stats.errors;
    t->stats.last_error = why;
    CloseLocked(t);  // the stream is out of step
    return failure;
  }
  t->got = got;
  if (response == nullptr) {  // size query: keep the response for the next call
    *size = expected;
    return TSS2_RC_SUCCESS;
  }
  if (*size < expected) {
    *size = expected;
    return TSS2_TCTI_RC_INSUFFICIENT_BUFFER;  // kept: the caller may retry with more room
  }
  std::memcpy(response, t->response, expected);
  *size = expected;
  t->awaiting_response = false;
  t->got = 0;
  t->last_use = Clock::now();
  if (t->idle_ms == 0) CloseLocked(t);
  return TSS2_RC_SUCCESS;
}

void Finalize(TSS2_TCTI_CONTEXT* ctx) {
  Transport* t = From(ctx);
  if (t == nullptr) return;
  if (t->owner != getpid()) {  // a fork child's copy: abandoned (see ChildAfterFork)
    std::lock_guard<std::mutex> lock(RegistryMutex());
    Registry().erase(t);
    return;
  }
  // Close the socket before leaving the registry: a fork() from another thread between the
  // two would otherwise give the child a copy nobody closes.
  {
    std::lock_guard<std::mutex> lock(t->mu);
    t->stop = true;
    CloseLocked(t);
    t->cv.notify_all();
  }
  if (t->closer != nullptr) {
    t->closer->join();
    delete t->closer;
    t->closer = nullptr;
  }
  {
    std::lock_guard<std::mutex> lock(RegistryMutex());
    Registry().erase(t);
  }
  t->shim.common.v1.magic = 0;
  delete t;
}

TSS2_RC NotImplemented(TSS2_TCTI_CONTEXT*) { return TSS2_TCTI_RC_NOT_IMPLEMENTED; }
TSS2_RC NoPollHandles(TSS2_TCTI_CONTEXT*, TSS2_TCTI_POLL_HANDLE*, size_t*) {
  return TSS2_TCTI_RC_NOT_IMPLEMENTED;
}
TSS2_RC NoLocality(TSS2_TCTI_CONTEXT*, uint8_t) { return TSS2_TCTI_RC_NOT_IMPLEMENTED; }
TSS2_RC NoSticky(TSS2_TCTI_CONTEXT*, TPM2_HANDLE*, uint8_t) { return TSS2_TCTI_RC_NOT_IMPLEMENTED; }

// Parses a swtpm TCTI string into addresses. False if it is not one we take (the loader gets it).
bool ParseSwtpm(std::string_view conf, Transport* t) {
  if (conf == "swtpm") {
    conf = "";
  } else if (conf.substr(0, 6) == "swtpm:") {
    conf.remove_prefix(6);
  } else {
    return false;
  }
  std::string host = "localhost";
  std::string port = "2321";
  std::string path;
  bool have_host_or_port = false;
  while (!conf.empty()) {
    size_t comma = conf.find(',');
    std::string_view item = conf.substr(0, comma);
    conf = comma == std::string_view::npos ? std::string_view() : conf.substr(comma + 1);
    size_t eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == item.size()) return false;
    std::string_view key = item.substr(0, eq);
    std::string value(item.substr(eq + 1));
    if (key == "host") {
      host = value;
      have_host_or_port = true;
    } else if (key == "port") {
      if (value.size() > 5 || value.find_first_not_of("0123456789") != std::string::npos) {
        return false;
      }
      long p = std::strtol(value.c_str(), nullptr, 10);
      if (p < 1 || p > 65535) return false;
      port = value;
      have_host_or_port = true;
    } else if (key == "path") {
      path = value;
    } else {
      return false;
    }
  }
  if (!path.empty()) {
    if (have_host_or_port) return false;
    Address a;
    auto* un = reinterpret_cast<sockaddr_un*>(&a.storage);
    if (path.size() >= sizeof(un->sun_path)) return false;
    un->sun_family = AF_UNIX;
    std::memcpy(un->sun_path, path.c_str(), path.size() + 1);
    a.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    t->addresses.push_back(a);
    t->endpoint = path;
    return true;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr) {
    return false;  // the loader reports the unresolvable host in its own words
  }
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
    Address a;
    std::memcpy(&a.storage, ai->ai_addr, ai->ai_addrlen);
    a.length = ai->ai_addrlen;
    t->addresses.push_back(a);
  }
  freeaddrinfo(found);
  t->endpoint = host + ":" + port;
  return !t->addresses.empty();
}

}  // namespace

void InstallTransportForkHandlers() {
  static const bool fork_handlers =
      (pthread_atfork(PrepareFork, ParentAfterFork, ChildAfterFork), true);
  (void)fork_handlers;
}

void SetIdleHook(TSS2_TCTI_CONTEXT* ctx, IdleHook hook, void* arg) {
  Transport* t = From(ctx);
  if (t == nullptr) return;
  std::lock_guard<std::mutex> lock(t->mu);
  t->hook = hook;
  t->hook_arg = arg;
}

namespace {
// Milliseconds from environment variable `name`: `fallback` when unset, empty, not a whole
// number, or outside [lo, hi].
int EnvMilliseconds(const char* name, int fallback, long lo, long hi) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  long ms = std::strtol(v, &end, 10);
  if (*end != '\0' || ms < lo || ms > hi) return fallback;
  return static_cast<int>(ms);
}
}  // namespace

int SwtpmResponseTimeoutMilliseconds() {
  return EnvMilliseconds("WIMSE_SWTPM_TIMEOUT_MS", kDefaultResponseTimeoutMs, 100,
                         kMaxResponseTimeoutMs);
}

int SwtpmIdleMilliseconds() {
  return EnvMilliseconds("WIMSE_SWTPM_IDLE_MS", kDefaultIdleMs, 0, kMaxIdleMs);
}

TSS2_RC OpenTcti(const std::string& conf, TSS2_TCTI_CONTEXT** out) {
  if (out == nullptr) return TSS2_TCTI_RC_BAD_REFERENCE;
  *out = nullptr;
  auto* t = new Transport();
  if (!ParseSwtpm(conf, t)) {
    delete t;
    return Tss2_TctiLdr_Initialize(conf.c_str(), out);
  }
  InstallTransportForkHandlers();
  t->idle_ms = SwtpmIdleMilliseconds();
  t->response_timeout_ms = SwtpmResponseTimeoutMilliseconds();
  t->owner = getpid();
  t->stats.persistent = true;
  TSS2_TCTI_CONTEXT_COMMON_V2& c = t->shim.common;
  c.v1.magic = kMagic;
  c.v1.version = 2;
  c.v1.transmit = Transmit;
  c.v1.receive = Receive;
  c.v1.finalize = Finalize;
  c.v1.cancel = NotImplemented;
  c.v1.getPollHandles = NoPollHandles;
  c.v1.setLocality = NoLocality;
  c.makeSticky = NoSticky;
  t->shim.self = t;
  {
    std::lock_guard<std::mutex> lock(RegistryMutex());
    Registry().insert(t);
  }
  *out = reinterpret_cast<TSS2_TCTI_CONTEXT*>(&t->shim);
  return TSS2_RC_SUCCESS;
}

void CloseTcti(TSS2_TCTI_CONTEXT** ctx) {
  if (ctx == nullptr || *ctx == nullptr) return;
  if (From(*ctx) != nullptr) {
    Finalize(*ctx);
    *ctx = nullptr;
  } else {
    Tss2_TctiLdr_Finalize(ctx);
  }
}

TransportState GetTransportState(TSS2_TCTI_CONTEXT* ctx) {
  Transport* t = From(ctx);
  if (t == nullptr) return {};
  std::lock_guard<std::mutex> lock(t->mu);
  TransportState st;
  st.persistent = true;
  st.open = t->fd >= 0;
  st.connections = t->stats.connections;
  st.errors = t->stats.errors;
  st.idle_ms = t->idle_ms;
  return st;
}

TransportStats GetTransportStats(TSS2_TCTI_CONTEXT* ctx) {
  Transport* t = From(ctx);
  if (t == nullptr) return {};
  std::lock_guard<std::mutex> lock(t->mu);
  return t->stats;
}

}  // namespace wimse::tpm
