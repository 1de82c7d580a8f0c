#include "server/open_calls.h"

#include <vector>

namespace mtla {

std::shared_ptr<OpenCalls::Entry> OpenCalls::Admit(std::function<void(const absl::Status&)> end) {
  absl::MutexLock lock(&mu_);
  if (!admitting_) return nullptr;
  std::shared_ptr<Entry> entry(new Entry(this, std::move(end)));
  open_.insert(entry);
  return entry;
}

void OpenCalls::Entry::Release() {
  {
    absl::MutexLock lock(&mu_);
    end_ = nullptr;
  }
  absl::MutexLock lock(&owner_->mu_);
  for (auto it = owner_->open_.begin(); it != owner_->open_.end(); ++it) {
    if (it->get() == this) {
      owner_->open_.erase(it);
      break;
    }
  }
}

void OpenCalls::StopAdmitting() {
  absl::MutexLock lock(&mu_);
  admitting_ = false;
}

int OpenCalls::open() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(open_.size());
}

void OpenCalls::EndAll(const absl::Status& status) {
  std::vector<std::shared_ptr<Entry>> entries;
  {
    absl::MutexLock lock(&mu_);
    entries.assign(open_.begin(), open_.end());
  }
  for (const std::shared_ptr<Entry>& entry : entries) {
    absl::MutexLock lock(&entry->mu_);
    if (entry->end_) {
      std::function<void(const absl::Status&)> end = std::move(entry->end_);
      entry->end_ = nullptr;
      end(status);
    }
  }
}

}  // namespace mtla
