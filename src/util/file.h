// File helpers: bounded reads and atomic writes (temp file in the same directory, fsync, rename).
#ifndef WIMSE_UTIL_FILE_H_
#define WIMSE_UTIL_FILE_H_

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <vector>

#include "util/bytes.h"
#include "util/result.h"

namespace wimse {

// Reads a whole file, refusing files larger than `max_size` bytes. Errors name the path.
Result<Bytes> ReadFileBytes(const std::string& path, size_t max_size = 1 << 20);
Result<std::string> ReadFileString(const std::string& path, size_t max_size = 1 << 20);

// Writes `data` to `path` atomically with permissions `mode`: the content goes to a temporary
// file in the same directory (created O_EXCL with `mode`), is fsync'ed and renamed over `path`.
// On any failure the temporary file is removed and `path` is left untouched.
Status WriteFileAtomic(const std::string& path, ByteView data, mode_t mode = 0644);
inline Status WriteFileAtomic(const std::string& path, std::string_view data, mode_t mode = 0644) {
  return WriteFileAtomic(path, AsBytes(data), mode);
}

// Whether `path` can be written as an output before any work is done: not a directory, not an
// existing file unless `replace`, in a writable directory. A usage error names the path.
Status CheckWritableDestination(const std::string& path, bool replace);

// Whether `a` and `b` name the same destination for rename(): the same name in the same
// directory, however spelled ("a", "./a", "d/../a", a symlinked directory).
bool SameDestination(const std::string& a, const std::string& b);

// Several output files written as one step: Stage writes each to a temporary file beside its
// destination (as WriteFileAtomic); Commit renames them all into place. Nothing is visible at
// any destination until Commit; destroying the object without Commit removes every staged
// temporary. A file staged with replace=false is created only if its name is still free at
// Commit (RENAME_NOREPLACE); if one is taken, the others made by this Commit are removed and
// nothing changed. If a replacing rename fails (rare: the directory changed under us), the
// error names the files already replaced. One destination staged twice (SameDestination) is a
// usage error.
class StagedFiles {
 public:
  StagedFiles() = default;
  ~StagedFiles();
  StagedFiles(const StagedFiles&) = delete;
  StagedFiles& operator=(const StagedFiles&) = delete;

  Status Stage(const std::string& path, ByteView data, mode_t mode, bool replace = true);
  Status Stage(const std::string& path, std::string_view data, mode_t mode, bool replace = true) {
    return Stage(path, AsBytes(data), mode, replace);
  }
  Status Commit();

 private:
  struct Staged {
    std::string path;
    std::string tmp;
    bool replace;
  };
  std::vector<Staged> files_;
};

// mkdir -p: creates `path` and any missing parents with `mode` (an existing directory is
// fine; its mode is left alone). Errors name the component that could not be made.
Status MakeDirectories(const std::string& path, mode_t mode);

}  // namespace wimse

#endif  // WIMSE_UTIL_FILE_H_
