#include "util/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

namespace wimse {

namespace {
Error IoError(const std::string& what, const std::string& path, int err) {
  return Error(Layer::kIo, what + " " + path + ": " + std::strerror(err));
}
}  // namespace

Result<Bytes> ReadFileBytes(const std::string& path, size_t max_size) {
  // O_NONBLOCK: opening a FIFO without a writer would otherwise block forever before the
  // regular-file check below can refuse it (it has no effect on reading a regular file).
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return IoError("cannot open", path, errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return IoError("cannot stat", path, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Error(Layer::kIo, "not a regular file: " + path);
  }
  if (static_cast<uint64_t>(st.st_size) > max_size) {
    ::close(fd);
    return Error(Layer::kIo, path + " is " + std::to_string(st.st_size) +
                                 " bytes, more than the limit of " + std::to_string(max_size));
  }
  Bytes out;
  out.reserve(static_cast<size_t>(st.st_size));
  uint8_t buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return IoError("cannot read", path, err);
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_size) {
      ::close(fd);
      return Error(Layer::kIo, path + " grew beyond the limit of " + std::to_string(max_size));
    }
    out.insert(out.end(), buf, buf + n);
  }
  ::close(fd);
  return out;
}

Result<std::string> ReadFileString(const std::string& path, size_t max_size) {
  WIMSE_ASSIGN_OR_RETURN(Bytes b, ReadFileBytes(path, max_size));
  return AsString(b);
}

namespace {

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

void SyncDir(const std::string& dir) {
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

// Writes `data` to a new temporary file beside `path` (O_EXCL, exact `mode`, fsync'ed) and
// returns its name; removes it on any failure.
Result<std::string> WriteTemp(const std::string& path, ByteView data, mode_t mode) {
  std::random_device rd;
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 8 && fd < 0; ++attempt) {
    char suffix[32];
    std::snprintf(suffix, sizeof(suffix), ".tmp.%08x", rd());
    tmp = path + suffix;
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0 && errno != EEXIST) return IoError("cannot create", tmp, errno);
  }
  if (fd < 0) return Error(Layer::kIo, "cannot create a temporary file next to " + path);
  auto fail = [&](const char* what) -> Error {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return IoError(what, tmp, err);
  };
  // open() applies the umask; set the exact mode requested.
  if (::fchmod(fd, mode) != 0) return fail("cannot chmod");
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("cannot write");
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("cannot fsync");
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return IoError("cannot close", tmp, err);
  }
  return tmp;
}

}  // namespace

Status WriteFileAtomic(const std::string& path, ByteView data, mode_t mode) {
  WIMSE_ASSIGN_OR_RETURN(std::string tmp, WriteTemp(path, data, mode));
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return IoError("cannot rename into", path, err);
  }
  SyncDir(DirOf(path));
  return OkStatus();
}

Status CheckWritableDestination(const std::string& path, bool replace) {
  if (path.empty()) return Error(Layer::kUsage, "empty output path");
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Error(Layer::kUsage, path + " is a directory");
    if (!replace) return Error(Layer::kUsage, path + " exists (use --force to replace it)");
  } else if (errno != ENOENT) {
    return IoError("cannot stat", path, errno);
  }
  std::string dir = DirOf(path);
  if (::access(dir.c_str(), W_OK) != 0) return IoError("cannot write to directory", dir, errno);
  return OkStatus();
}

namespace {
// What rename() would replace: the directory (device, inode) and the name in it, so "a",
// "./a" and "dir/../a" are one destination. Empty when the directory cannot be stat'ed.
std::string DestinationKey(const std::string& path) {
  struct stat st {};
  if (::stat(DirOf(path).c_str(), &st) != 0) return std::string();
  size_t slash = path.rfind('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + "/" + name;
}
}  // namespace

bool SameDestination(const std::string& a, const std::string& b) {
  if (a == b) return true;
  std::string ka = DestinationKey(a);
  return !ka.empty() && ka == DestinationKey(b);
}

StagedFiles::~StagedFiles() {
  for (const auto& f : files_) ::unlink(f.tmp.c_str());
}

Status StagedFiles::Stage(const std::string& path, ByteView data, mode_t mode, bool replace) {
  for (const auto& f : files_) {
    if (SameDestination(f.path, path)) {
      return Error(Layer::kUsage, path + " and " + f.path + " are the same file");
    }
  }
  WIMSE_ASSIGN_OR_RETURN(std::string tmp, WriteTemp(path, data, mode));
  files_.push_back({path, std::move(tmp), replace});
  return OkStatus();
}

Status StagedFiles::Commit() {
  // New files first, each created only if its name is still free (RENAME_NOREPLACE: a file
  // that appeared since the caller's check is not replaced without its consent); if one is
  // taken, the new files made so far are removed again and nothing changed. Replacements last.
  std::stable_partition(files_.begin(), files_.end(), [](const Staged& f) { return !f.replace; });
  std::vector<std::string> created;
  for (size_t i = 0; i < files_.size(); ++i) {
    const Staged& f = files_[i];
    int rc = f.replace
                 ? ::rename(f.tmp.c_str(), f.path.c_str())
                 : ::renameat2(AT_FDCWD, f.tmp.c_str(), AT_FDCWD, f.path.c_str(), RENAME_NOREPLACE);
    if (rc != 0) {
      int err = errno;
      std::string replaced;
      for (size_t j = 0; j < i; ++j) {
        if (files_[j].replace) {
          replaced += (replaced.empty() ? "" : ", ") + files_[j].path;
        } else {
          ::unlink(files_[j].path.c_str());  // ours, made a moment ago
        }
      }
      files_.erase(files_.begin(), files_.begin() + static_cast<std::ptrdiff_t>(i));
      Error e = err == EEXIST && !f.replace
                    ? Error(Layer::kIo, f.path +
                                            " appeared meanwhile; not replaced (use --force to "
                                            "replace it)")
                    : IoError("cannot rename into", f.path, err);
      if (replaced.empty()) return e;
      return Error(Layer::kIo, e.message() + " (already replaced: " + replaced + ")");
    }
    SyncDir(DirOf(f.path));
  }
  files_.clear();
  return OkStatus();
}

Status MakeDirectories(const std::string& path, mode_t mode) {
  if (path.empty()) {
    return Error(Layer::kUsage, "empty directory path");
  }
  for (size_t pos = path.find('/', 1);; pos = path.find('/', pos + 1)) {
    std::string part = path.substr(0, pos);
    if (!part.empty() && part.back() != '/' && ::mkdir(part.c_str(), mode) != 0 &&
        errno != EEXIST) {
      return Error(Layer::kIo, "cannot make directory " + part + ": " + std::strerror(errno));
    }
    if (pos == std::string::npos) break;
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Error(Layer::kIo, path + " exists and is not a directory");
  }
  return OkStatus();
}

}  // namespace wimse
