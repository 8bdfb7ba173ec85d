// The persistent swtpm transport (src/tpm/tcti.h) against the suite's swtpm, and against broken
// endpoints (a Unix socket that hangs up, answers garbage, or answers too much): one connection
// for a burst of commands, the TPM handed to other clients once idle, fork, signals, and the
// stock behaviour with WIMSE_SWTPM_IDLE_MS=0.
#include <dirent.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <tss2/tss2_tctildr.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "support/tpm_fixture.h"
#include "tpm/context.h"
#include "tpm/tcti.h"

namespace wimse {
namespace {

using TctiTest = testing::TpmTest;

Status GetRandom(tpm::TpmContext& ctx, int times) {
  return ctx.Run([&](ESYS_CONTEXT* esys) -> Status {
    for (int i = 0; i < times; ++i) {
      TPM2B_DIGEST* out = nullptr;
      TSS2_RC rc = Esys_GetRandom(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, 16, &out);
      Esys_Free(out);
      if (rc != TSS2_RC_SUCCESS) return tpm::TpmError("TPM2_GetRandom", rc);
    }
    return OkStatus();
  });
}

// One TPM2_GetRandom through tpm2-tss's own swtpm TCTI (a new connection per command), as
// tpm2-tools would send it.
bool StockGetRandom(const std::string& tcti) {
  TSS2_TCTI_CONTEXT* t = nullptr;
  if (Tss2_TctiLdr_Initialize(tcti.c_str(), &t) != TSS2_RC_SUCCESS) return false;
  ESYS_CONTEXT* esys = nullptr;
  bool ok = false;
  if (Esys_Initialize(&esys, t, nullptr) == TSS2_RC_SUCCESS) {
    TPM2B_DIGEST* out = nullptr;
    ok = Esys_GetRandom(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, 8, &out) == TSS2_RC_SUCCESS;
    Esys_Free(out);
    Esys_Finalize(&esys);
  }
  Tss2_TctiLdr_Finalize(&t);
  return ok;
}

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_) {
      setenv(name_, old_.c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

TEST_F(TctiTest, ABurstOfCommandsUsesOneConnection) {
  ScopedEnv idle("WIMSE_SWTPM_IDLE_MS", "2000");
  tpm::TpmContext ctx(tcti_);
  ASSERT_TRUE(ctx.Connect().ok());
  ASSERT_TRUE(GetRandom(ctx, 50).ok());
  tpm::TransportStats s = ctx.transport_stats();
  EXPECT_TRUE(s.persistent);
  EXPECT_EQ(s.connections, 1u);
  EXPECT_EQ(s.commands, 51u);  // the connection probe and 50 GetRandom
  EXPECT_EQ(s.idle_closes, 0u);
}

TEST_F(TctiTest, IdleZeroClosesAfterEveryResponseLikeTpm2Tss) {
  ScopedEnv idle("WIMSE_SWTPM_IDLE_MS", "0");
  tpm::TpmContext ctx(tcti_);
  ASSERT_TRUE(GetRandom(ctx, 10).ok());
  tpm::TransportStats s = ctx.transport_stats();
  EXPECT_EQ(s.commands, 11u);
  EXPECT_EQ(s.connections, 11u);
}

// swtpm serves one connection at a time: while ours is open, another client waits. Once ours
// has been idle for the period it is closed, the other client is served, and ours reconnects.
TEST_F(TctiTest, AnIdleConnectionIsHandedBackToOtherClients) {
  ScopedEnv idle("WIMSE_SWTPM_IDLE_MS", "50");
  tpm::TpmContext ctx(tcti_);
  ASSERT_TRUE(GetRandom(ctx, 3).ok());
  auto t0 = std::chrono::steady_clock::now();
  auto other = std::async(std::launch::async, [&] { return StockGetRandom(tcti_); });
  ASSERT_EQ(other.wait_for(std::chrono::seconds(10)), std::future_status::ready)
      << "another client never got the TPM: our idle connection was not closed";
  EXPECT_TRUE(other.get());
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(waited, 5.0);
  ASSERT_TRUE(GetRandom(ctx, 1).ok());
  tpm::TransportStats s = ctx.transport_stats();
  EXPECT_GE(s.idle_closes, 1u);
  EXPECT_EQ(s.connections, 2u);
}

// The default period is short enough that tools run between our commands are not held up for
// long, and another TpmContext of the same process (the provider's, next to the CLI's) takes
// turns with ours.
TEST_F(TctiTest, TwoContextsOfOneProcessTakeTurns) {
  tpm::TpmContext a(tcti_);
  tpm::TpmContext b(tcti_);
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(GetRandom(a, 2).ok());
    ASSERT_TRUE(GetRandom(b, 2).ok());
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 5.0);
  EXPECT_GE(a.transport_stats().idle_closes + b.transport_stats().idle_closes, 10u);
}

// A child after fork() must not keep the parent's connection alive: swtpm would then never
// accept the child's own connection (nor anyone else's) and the child would hang.
TEST_F(TctiTest, ForkedChildGetsItsOwnConnection) {
  tpm::TpmContext ctx(tcti_);
  ASSERT_TRUE(GetRandom(ctx, 2).ok());  // the parent's connection is open now
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    alarm(20);
    Status s = GetRandom(ctx, 3);  // reconnects in the child
    _exit(s.ok() && ctx.transport_stats().connections == 1 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "the child was killed (hung until its alarm?)";
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_TRUE(GetRandom(ctx, 2).ok());  // the parent still works
}

// Bits of /proc/self/task/T/status SigBlk.
uint64_t BlockedSignals(const std::string& task) {
  std::ifstream in("/proc/self/task/" + task + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("SigBlk:", 0) == 0) return std::stoull(line.substr(7), nullptr, 16);
  }
  return 0;
}

// An application that blocks SIGTERM and takes it with sigwait() (our own daemons do) must never
// have it delivered to the transport's thread, whose default action would kill the process
// without its exit handlers (which flush the loaded keys).
TEST_F(TctiTest, TheIdleThreadBlocksEverySignal) {
  tpm::TpmContext ctx(tcti_);
  ASSERT_TRUE(GetRandom(ctx, 1).ok());
  std::string self = std::to_string(getpid());
  int others = 0;
  std::vector<std::string> tasks;
  if (auto* d = opendir("/proc/self/task")) {
    while (auto* e = readdir(d)) {
      if (e->d_name[0] != '.') tasks.emplace_back(e->d_name);
    }
    closedir(d);
  }
  for (const std::string& t : tasks) {
    if (t == self) continue;
    ++others;
    uint64_t blocked = BlockedSignals(t);
    EXPECT_NE(blocked & (uint64_t{1} << (SIGTERM - 1)), 0u) << "task " << t;
    for (int sig : {SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD, SIGPIPE, SIGALRM}) {
      EXPECT_NE(blocked & (uint64_t{1} << (sig - 1)), 0u) << "task " << t << " signal " << sig;
    }
  }
  EXPECT_GE(others, 1) << "no idle thread found";
}

// A fake endpoint on a Unix socket: accepts connections and answers each command with `reply`
// (empty: hang up without answering). Not a TPM: it stands for a transport that breaks.
class BrokenEndpoint {
 public:
  explicit BrokenEndpoint(std::vector<uint8_t> reply, bool close_after_reply = false,
                          bool silent = false)
      : reply_(std::move(reply)), close_after_reply_(close_after_reply), silent_(silent) {
    char tmpl[] = "/tmp/wimse-tcti-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/tpm.sock";
    listener_ = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path_.c_str(), sizeof(a.sun_path) - 1);
    bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    listen(listener_, 4);
    thread_ = std::thread([this] {
      for (;;) {
        int fd = accept(listener_, nullptr, nullptr);
        if (fd < 0) return;
        uint8_t buf[4096];
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0) ++commands_;
        if (n > 0 && silent_) {  // never answer; wait for the client to give up
          ssize_t r = read(fd, buf, sizeof(buf));
          (void)r;
        }
        if (n > 0 && !reply_.empty()) {
          ssize_t w = write(fd, reply_.data(), reply_.size());
          (void)w;
          // Hold on until the client is done reading (or hang up at once, as a restarted
          // swtpm does between two commands).
          if (!close_after_reply_) {
            ssize_t r = read(fd, buf, sizeof(buf));
            (void)r;
          }
        }
        close(fd);
      }
    });
  }
  ~BrokenEndpoint() {
    shutdown(listener_, SHUT_RDWR);
    close(listener_);
    thread_.join();
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }
  std::string tcti() const { return "swtpm:path=" + path_; }
  int commands() const { return commands_; }

 private:
  std::vector<uint8_t> reply_;
  bool close_after_reply_ = false;
  bool silent_ = false;
  std::string dir_;
  std::string path_;
  int listener_ = -1;
  std::atomic<int> commands_{0};
  std::thread thread_;
};

std::vector<uint8_t> Header(uint32_t size) {
  return {0x80,
          0x01,
          static_cast<uint8_t>(size >> 24),
          static_cast<uint8_t>(size >> 16),
          static_cast<uint8_t>(size >> 8),
          static_cast<uint8_t>(size),
          0,
          0,
          0,
          0};
}

TEST(TctiBrokenEndpoint, HangUpIsATctiErrorThatSaysSo) {
  BrokenEndpoint e({});
  tpm::TpmContext ctx(e.tcti());
  Status s = ctx.Connect();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().layer(), Layer::kTcti);
  EXPECT_NE(s.error().ToString().find("closed by the TPM"), std::string::npos)
      << s.error().ToString();
  EXPECT_EQ(e.commands(), 1);  // sent once, never retried: the command may have run
}

// Hostile review: an endpoint that accepts a command and never answers held the caller (and
// the context lock) forever. A blocking receive now gives up after WIMSE_SWTPM_TIMEOUT_MS.
TEST(TctiBrokenEndpoint, SilentPeerTimesOutWithAnErrorThatSaysSo) {
  setenv("WIMSE_SWTPM_TIMEOUT_MS", "500", 1);
  {
    BrokenEndpoint e({}, false, /*silent=*/true);
    tpm::TpmContext ctx(e.tcti());
    auto start = std::chrono::steady_clock::now();
    Status s = ctx.Connect();
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().layer(), Layer::kTcti);
    EXPECT_NE(s.error().ToString().find("no response from"), std::string::npos)
        << s.error().ToString();
    EXPECT_LT(waited, 30.0);  // bounded (the limit is 0.5 s; generous for a loaded machine)
    EXPECT_EQ(e.commands(), 1);
  }
  unsetenv("WIMSE_SWTPM_TIMEOUT_MS");
  EXPECT_EQ(tpm::SwtpmResponseTimeoutMilliseconds(), 120000);
}

TEST(TctiBrokenEndpoint, ResponseSizeOutOfRangeIsMalformed) {
  for (uint32_t size : {5u, 4097u, 0xffffffffu}) {
    BrokenEndpoint e(Header(size));
    tpm::TpmContext ctx(e.tcti());
    Status s = ctx.Connect();
    ASSERT_FALSE(s.ok()) << size;
    EXPECT_EQ(s.error().layer(), Layer::kTcti) << size;
    EXPECT_NE(s.error().ToString().find("malformed response"), std::string::npos)
        << size << ": " << s.error().ToString();
  }
}

TEST(TctiBrokenEndpoint, MoreBytesThanTheResponseSaysIsMalformed) {
  std::vector<uint8_t> reply = Header(10);
  reply.push_back(0xAA);  // one byte past the response
  BrokenEndpoint e(reply);
  tpm::TpmContext ctx(e.tcti());
  Status s = ctx.Connect();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().ToString().find("malformed response"), std::string::npos)
      << s.error().ToString();
}

// The server hangs up between two commands (swtpm restarted): the next command notices before
// sending (nothing is lost or sent twice) and goes out on a new connection.
TEST(TctiBrokenEndpoint, PeerThatHungUpBetweenCommandsIsReconnected) {
  BrokenEndpoint e(Header(10), /*close_after_reply=*/true);
  TSS2_TCTI_CONTEXT* t = nullptr;
  ASSERT_EQ(tpm::OpenTcti(e.tcti(), &t), TSS2_RC_SUCCESS);
  std::vector<uint8_t> command = Header(12);
  command.push_back(0);
  command.push_back(0);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(Tss2_Tcti_Transmit(t, command.size(), command.data()), TSS2_RC_SUCCESS) << i;
    uint8_t response[64];
    size_t size = sizeof(response);
    ASSERT_EQ(Tss2_Tcti_Receive(t, &size, response, TSS2_TCTI_TIMEOUT_BLOCK), TSS2_RC_SUCCESS) << i;
    EXPECT_EQ(size, 10u);
    // Let the hang-up arrive before the next command.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  tpm::TransportStats s = tpm::GetTransportStats(t);
  EXPECT_EQ(s.commands, 3u);
  EXPECT_EQ(s.connections, 3u);
  EXPECT_EQ(e.commands(), 3);
  tpm::CloseTcti(&t);
}

// A response size query (response == NULL), then a buffer that is too small, then the right
// one: the same response each time, read once from the socket.
TEST(TctiBrokenEndpoint, SizeQueryAndShortBufferKeepTheResponse) {
  std::vector<uint8_t> reply = Header(14);
  for (uint8_t b : {0xde, 0xad, 0xbe, 0xef}) reply.push_back(b);
  BrokenEndpoint e(reply);
  TSS2_TCTI_CONTEXT* t = nullptr;
  ASSERT_EQ(tpm::OpenTcti(e.tcti(), &t), TSS2_RC_SUCCESS);
  std::vector<uint8_t> command = Header(10);
  ASSERT_EQ(Tss2_Tcti_Transmit(t, command.size(), command.data()), TSS2_RC_SUCCESS);
  size_t size = 0;
  ASSERT_EQ(Tss2_Tcti_Receive(t, &size, nullptr, 5000), TSS2_RC_SUCCESS);
  EXPECT_EQ(size, 14u);
  uint8_t small[8];
  size = sizeof(small);
  EXPECT_EQ(Tss2_Tcti_Receive(t, &size, small, 5000), TSS2_TCTI_RC_INSUFFICIENT_BUFFER);
  EXPECT_EQ(size, 14u);
  uint8_t buf[64];
  size = sizeof(buf);
  ASSERT_EQ(Tss2_Tcti_Receive(t, &size, buf, 5000), TSS2_RC_SUCCESS);
  ASSERT_EQ(size, 14u);
  EXPECT_EQ(std::vector<uint8_t>(buf, buf + 14), reply);
  // A second receive without a command is out of sequence.
  size = sizeof(buf);
  EXPECT_EQ(Tss2_Tcti_Receive(t, &size, buf, 0), TSS2_TCTI_RC_BAD_SEQUENCE);
  tpm::CloseTcti(&t);
}

// Nothing arrives within the timeout: TRY_AGAIN, and the response is still collected later.
TEST_F(TctiTest, TimeoutIsTryAgainAndTheResponseStillArrives) {
  TSS2_TCTI_CONTEXT* t = nullptr;
  ASSERT_EQ(tpm::OpenTcti(tcti_, &t), TSS2_RC_SUCCESS);
  // swtpm may answer a GetRandom before the first poll: both outcomes are fine, what is
  // asserted is that a TRY_AGAIN loses nothing.
  const uint8_t get_random[] = {0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 16};
  ASSERT_EQ(Tss2_Tcti_Transmit(t, sizeof(get_random), get_random), TSS2_RC_SUCCESS);
  uint8_t buf[64];
  size_t size = sizeof(buf);
  TSS2_RC rc = Tss2_Tcti_Receive(t, &size, buf, 0);
  EXPECT_TRUE(rc == TSS2_RC_SUCCESS || rc == TSS2_TCTI_RC_TRY_AGAIN) << std::hex << rc;
  if (rc == TSS2_TCTI_RC_TRY_AGAIN) {
    size = sizeof(buf);
    rc = Tss2_Tcti_Receive(t, &size, buf, 10000);
  }
  ASSERT_EQ(rc, TSS2_RC_SUCCESS);
  EXPECT_EQ(size, 28u);  // header + TPM2B of 16 bytes
  tpm::CloseTcti(&t);
}

TEST(TctiBrokenEndpoint, MissingSocketNamesThePathAndTheReason) {
  tpm::TpmContext ctx("swtpm:path=/nonexistent/wimse/tpm.sock");
  Status s = ctx.Connect();
  ASSERT_FALSE(s.ok());
  std::string text = s.error().ToString();
  EXPECT_EQ(s.error().layer(), Layer::kTcti);
  EXPECT_NE(text.find("/nonexistent/wimse/tpm.sock"), std::string::npos) << text;
  EXPECT_NE(text.find("No such file or directory"), std::string::npos) << text;
}

TEST(TctiParse, StringsWeDoNotTakeGoToTheLoader) {
  // Not ours: tpm2-tss's loader reports them (here: an unknown key, a bad port, a TCTI that
  // does not exist); each is a clean failure, not a connection attempt somewhere else.
  for (const char* conf : {"swtpm:host=127.0.0.1,port=1,extra=1", "swtpm:port=99999",
                           "swtpm:port=12ab", "nosuchtcti:x"}) {
    TSS2_TCTI_CONTEXT* t = nullptr;
    TSS2_RC rc = tpm::OpenTcti(conf, &t);
    if (rc == TSS2_RC_SUCCESS) {  // the loader took it (it may connect lazily): not ours
      EXPECT_FALSE(tpm::GetTransportStats(t).persistent) << conf;
      tpm::CloseTcti(&t);
    } else {
      EXPECT_EQ(t, nullptr) << conf;
    }
  }
  TSS2_TCTI_CONTEXT* t = nullptr;
  ASSERT_EQ(tpm::OpenTcti("swtpm:host=127.0.0.1,port=2321", &t), TSS2_RC_SUCCESS);
  EXPECT_TRUE(tpm::GetTransportStats(t).persistent);
  tpm::CloseTcti(&t);
  EXPECT_EQ(t, nullptr);
  ASSERT_EQ(tpm::OpenTcti("swtpm", &t), TSS2_RC_SUCCESS);
  EXPECT_TRUE(tpm::GetTransportStats(t).persistent);
  tpm::CloseTcti(&t);
}

TEST(TctiParse, IdlePeriodFromTheEnvironment) {
  {
    ScopedEnv e("WIMSE_SWTPM_IDLE_MS", "250");
    EXPECT_EQ(tpm::SwtpmIdleMilliseconds(), 250);
  }
  for (const char* bad : {"", "-1", "abc", "60001", "5ms"}) {
    ScopedEnv e("WIMSE_SWTPM_IDLE_MS", bad);
    EXPECT_EQ(tpm::SwtpmIdleMilliseconds(), 5) << bad;
  }
}

}  // namespace
}  // namespace wimse
