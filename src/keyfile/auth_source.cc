#include "keyfile/auth_source.h"

#include <fcntl.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "util/file.h"

namespace wimse {

namespace {

void CutNewline(std::string& s) {
  if (!s.empty() && s.back() == '\n') s.pop_back();
  if (!s.empty() && s.back() == '\r') s.pop_back();
}

void Wipe(std::string& s) {
  volatile char* p = s.data();
  for (size_t i = 0; i < s.size(); ++i) p[i] = 0;
  s.clear();
}

Result<std::string> ReadTty(const std::string& what) {
  int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    return Error(Layer::kIo, std::string("--auth-prompt needs a terminal: /dev/tty: ") +
                                 std::strerror(errno));
  }
  std::string prompt = "Auth value for " + what + ": ";
  (void)!write(fd, prompt.data(), prompt.size());
  termios old{};
  bool restore = tcgetattr(fd, &old) == 0;
  if (restore) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    quiet.c_lflag |= ECHONL;
    tcsetattr(fd, TCSAFLUSH, &quiet);
  }
  std::string line;
  char c;
  while (line.size() <= 1024 && read(fd, &c, 1) == 1 && c != '\n') line.push_back(c);
  if (restore) tcsetattr(fd, TCSAFLUSH, &old);
  close(fd);
  CutNewline(line);
  return line;
}

}  // namespace

Status CheckAuthValueSize(size_t size) {
  if (size > kMaxAuthValueSize) {
    return Error(Layer::kUsage, "the auth value is " + std::to_string(size) +
                                    " bytes; the TPM accepts at most " +
                                    std::to_string(kMaxAuthValueSize));
  }
  return OkStatus();
}

Result<SecretBytes> ReadAuthValue(const AuthSource& src, const std::string& what) {
  int sources = (src.file.empty() ? 0 : 1) + (src.env.empty() ? 0 : 1) + (src.prompt ? 1 : 0);
  if (sources != 1) {
    return Error(Layer::kUsage, "give exactly one of --auth-file, --auth-env, --auth-prompt");
  }
  std::string value;
  if (!src.file.empty()) {
    WIMSE_ASSIGN_OR_RETURN(value, ReadFileString(src.file, 4096));
    CutNewline(value);
  } else if (!src.env.empty()) {
    const char* v = std::getenv(src.env.c_str());
    if (v == nullptr) {
      return Error(Layer::kUsage, "environment variable " + src.env + " is not set");
    }
    value = v;
  } else {
    WIMSE_ASSIGN_OR_RETURN(value, ReadTty(what));
  }
  if (value.empty()) {
    return Error(Layer::kUsage, "the auth value is empty (omit the --auth-* option for none)");
  }
  if (Status size = CheckAuthValueSize(value.size()); !size.ok()) {
    Wipe(value);
    return size.error();
  }
  SecretBytes out(AsBytes(value));
  Wipe(value);
  return out;
}

}  // namespace wimse
