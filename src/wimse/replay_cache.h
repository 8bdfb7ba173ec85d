// Replay protection for WPTs (wpt-02 §2 step 9): each (key thumbprint, jti) is accepted once
// within its validity window. Keyed on the jti and the proof key, never on the token string, so
// re-encodings of one token (high-S, C21) are still caught.
#ifndef WIMSE_WIMSE_REPLAY_CACHE_H_
#define WIMSE_WIMSE_REPLAY_CACHE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace wimse {

class ReplayCache {
 public:
  virtual ~ReplayCache() = default;
  // Records `key` until `expires_at` (seconds). Returns false if `key` is already recorded and
  // not yet expired at `now`, or if the cache cannot record it (fail closed).
  virtual bool CheckAndInsert(const std::string& key, int64_t expires_at, int64_t now) = 0;
};

// An in-process cache bounded to `max_entries`; expired entries are purged on insert. When full
// of live entries it refuses new ones (the token is rejected) rather than forgetting old ones.
// Thread-safe.
class InMemoryReplayCache : public ReplayCache {
 public:
  explicit InMemoryReplayCache(size_t max_entries = 100000) : max_entries_(max_entries) {}
  bool CheckAndInsert(const std::string& key, int64_t expires_at, int64_t now) override;
  size_t size() const;

 private:
  void PurgeLocked(int64_t now);
  mutable std::mutex mu_;
  size_t max_entries_;
  std::map<std::string, int64_t> entries_;
};

}  // namespace wimse

#endif  // WIMSE_WIMSE_REPLAY_CACHE_H_
