#include "server/open_calls.h"

#include <vector>

#include "absl/strings/str_cat.h"

namespace mtla {

absl::StatusOr<std::shared_ptr<OpenCalls::Entry>> OpenCalls::Admit(
    std::function<void(const absl::Status&)> end) {
  absl::MutexLock lock(&mu_);
  if (!admitting_) {
    return absl::UnavailableError("server is draining; retry on another replica");
  }
  if (max_open_ > 0 && static_cast<int>(open_.size()) >= max_open_) {
    if (metrics_) metrics_->CountCallLimited("max_streams");
    return absl::ResourceExhaustedError(absl::StrCat(
        "too many concurrent calls: this server takes at most ", max_open_,
        " open Generate, StreamingTranslate and Translate calls at once (--max_streams); "
        "retry with backoff or on another replica"));
  }
  std::shared_ptr<Entry> entry(new Entry(this, std::move(end)));
  open_.insert(entry);
  PublishOpen();
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
      owner_->PublishOpen();
      break;
    }
  }
}

void OpenCalls::PublishOpen() {
  if (metrics_) metrics_->SetOpenCalls(static_cast<int>(open_.size()));
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
