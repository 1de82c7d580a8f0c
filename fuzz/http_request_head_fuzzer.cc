// The metrics endpoint's request-head parser on arbitrary bytes from the
// network. Invariants: a complete head lies within the input and parses the
// same on its own; errors carry one of the statuses the contract names; and
// parsing is prefix-consistent (a prefix that is already an error or already
// complete decides the whole input the same way).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "server/http/http_request_head.h"

namespace {

constexpr size_t kMaxHead = 8192;

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using mtla::http::ParseRequestHead;
  using mtla::http::ParseState;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const mtla::http::ParseResult whole = ParseRequestHead(input, kMaxHead);
  switch (whole.state) {
    case ParseState::kComplete: {
      Check(whole.head.head_bytes > 0 && whole.head.head_bytes <= size);
      Check(!whole.head.method.empty() && !whole.head.path.empty());
      Check(whole.head.path[0] == '/' || whole.head.path == "*");
      Check(whole.head.minor_version == 0 || whole.head.minor_version == 1);
      const auto alone = ParseRequestHead(input.substr(0, whole.head.head_bytes), kMaxHead);
      Check(alone.state == ParseState::kComplete &&
            alone.head.head_bytes == whole.head.head_bytes && alone.head.path == whole.head.path);
      break;
    }
    case ParseState::kError:
      Check(whole.error_status == 400 || whole.error_status == 414 ||
            whole.error_status == 431 || whole.error_status == 505);
      Check(!whole.error_reason.empty());
      break;
    case ParseState::kIncomplete:
      Check(size <= kMaxHead);
      break;
  }
  if (size > 1) {
    const size_t cut = data[0] % size;
    const auto prefix = ParseRequestHead(input.substr(0, cut), kMaxHead);
    if (prefix.state == ParseState::kError) Check(whole.state == ParseState::kError);
    if (prefix.state == ParseState::kComplete) {
      Check(whole.state == ParseState::kComplete &&
            whole.head.head_bytes == prefix.head.head_bytes);
    }
  }
  return 0;
}
