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
    return Error(Layer::kIo,
                 std::string("--auth-prompt needs a terminal: /dev/tty: ") + std::strerror(errno));
  }
  // Echo off (and earlier typeahead discarded) before the prompt appears, as getpass does:
  // whatever is typed after the prompt is kept and never shown.
  termios old{};
  bool restore = tcgetattr(fd, &old) == 0;
  if (restore) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    quiet.c_lflag |= ECHONL;
    tcsetattr(fd, TCSAFLUSH, &quiet);
  }
  std::string prompt = "Auth value for " + what + ": ";
  (void)!write(fd, prompt.data(), prompt.size());
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
    // Only LF ends the line, as for OpenSSL's `-passin file:` (apps/lib/apps.c cuts at the
    // first '\n' and keeps a '\r'): a CR LF file would give this CLI and OpenSSL programs two
    // different values, and each use through OpenSSL would cost a dictionary-attack strike.
    if (!value.empty() && value.back() == '\n') value.pop_back();
    if (!value.empty() && value.back() == '\r') {
      Wipe(value);
      return Error(Layer::kUsage, "the auth file " + src.file +
                                      " ends its line with CR LF; OpenSSL's -passin file: "
                                      "would keep the CR as part of the value, so the CLI and "
                                      "OpenSSL programs would disagree: end the line with LF "
                                      "only (nothing was sent to the TPM)");
    }
    // OpenSSL's `-passin file:` reads only up to the first newline and C strings end at a NUL:
    // a key made with such a value could be used by this CLI but by no OpenSSL program.
    if (value.find_first_of(std::string("\n\r\0", 3)) != std::string::npos) {
      Wipe(value);
      return Error(Layer::kUsage, "the auth file " + src.file +
                                      " holds more than one line or a NUL byte; an auth value "
                                      "is one line (OpenSSL's -passin file: reads only the first)");
    }
  } else if (!src.env.empty()) {
    const char* v = std::getenv(src.env.c_str());
    if (v == nullptr) {
      return Error(Layer::kUsage, "environment variable " + src.env + " is not set");
    }
    value = v;
    // One line, as from a file or a prompt: a value with a line break could be given here but
    // never through OpenSSL's -passin file: or a pass-phrase prompt.
    if (value.find_first_of("\r\n") != std::string::npos) {
      Wipe(value);
      return Error(Layer::kUsage, "environment variable " + src.env +
                                      " holds a line break; an auth value is one line (OpenSSL's "
                                      "-passin file: and pass-phrase prompts read one)");
    }
  } else {
    WIMSE_ASSIGN_OR_RETURN(value, ReadTty(what));
    if (src.confirm && !value.empty()) {
      auto again = ReadTty(what + " (again)");
      if (!again.ok()) {
        Wipe(value);
        return std::move(again).error();
      }
      bool same = *again == value;
      Wipe(*again);
      if (!same) {
        Wipe(value);
        return Error(Layer::kUsage, "the two auth values typed differ; nothing was created");
      }
    }
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
