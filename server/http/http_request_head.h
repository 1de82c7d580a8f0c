// Incremental parsing of an HTTP/1.x request head (request line and header
// fields, up to the empty line), bounded in size. The metrics endpoint uses it
// on bytes from untrusted peers (load-balancer probes, scanners, browsers).
//
// Thread-compatible: pure functions.
#ifndef MTLA_SERVER_HTTP_HTTP_REQUEST_HEAD_H_
#define MTLA_SERVER_HTTP_HTTP_REQUEST_HEAD_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace mtla::http {

struct RequestHead {
  std::string method;  // e.g. "GET" (case-sensitive, as RFC 9110 says)
  std::string path;    // the request target without its query ("/metrics")
  int minor_version = 1;  // HTTP/1.<minor_version>
  size_t head_bytes = 0;  // bytes of `buffer` the head took, final CRLF included
};

enum class ParseState {
  kIncomplete,  // the head has not ended yet: read more and call again
  kComplete,    // `head` is filled
  kError,       // `error_status` / `error_reason` say what to answer
};

struct ParseResult {
  ParseState state = ParseState::kIncomplete;
  RequestHead head;
  int error_status = 0;      // 400, 414, 431 or 505
  std::string error_reason;  // for the response body, in the client's terms
};

// Parses the request head at the start of `buffer`. A head (or, while
// incomplete, the buffer) longer than `max_head_bytes` is an error (431; 414
// when the request line alone is too long). Bare LF line ends are accepted.
// Only HTTP/1.0 and HTTP/1.1 are accepted (505 for other versions, 400 for
// anything that is not an HTTP/1.x request, e.g. the HTTP/2 preface or TLS).
ParseResult ParseRequestHead(std::string_view buffer, size_t max_head_bytes);

}  // namespace mtla::http

#endif  // MTLA_SERVER_HTTP_HTTP_REQUEST_HEAD_H_
