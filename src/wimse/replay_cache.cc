#include "wimse/replay_cache.h"

namespace wimse {

void InMemoryReplayCache::PurgeLocked(int64_t now) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second <= now) {
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
}

bool InMemoryReplayCache::CheckAndInsert(const std::string& key, int64_t expires_at, int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    if (it->second > now) {
      return false;
    }
    entries_.erase(it);
  }
  if (entries_.size() >= max_entries_) {
    PurgeLocked(now);
    if (entries_.size() >= max_entries_) {
      return false;
    }
  }
  entries_.emplace(key, expires_at);
  return true;
}

size_t InMemoryReplayCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

}  // namespace wimse
