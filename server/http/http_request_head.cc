#include "server/http/http_request_head.h"

#include <algorithm>


namespace mtla::http {
namespace {

// RFC 9110 token characters.
bool IsTokenChar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (!IsTokenChar(c)) return false;
  }
  return true;
}

// Visible ASCII (and obs-text) without spaces: what a request target may hold.
bool IsTargetChar(unsigned char c) { return c > 0x20 && c != 0x7f; }

ParseResult Error(int status, std::string reason) {
  ParseResult r;
  r.state = ParseState::kError;
  r.error_status = status;
  r.error_reason = std::move(reason);
  return r;
}

// The path of an origin-form ("/a?b"), absolute-form ("http://h/a") or
// asterisk-form ("*") target; empty when the target has none of these forms.
std::string PathOf(std::string_view target) {
  if (target == "*") return "*";
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() > scheme.size() && target.substr(0, scheme.size()) == scheme) {
      const size_t slash = target.find('/', scheme.size());
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
      break;
    }
  }
  if (target.empty() || target[0] != '/') return "";
  const size_t end = target.find_first_of("?#");
  return std::string(target.substr(0, end));
}

ParseResult ParseRequestLine(std::string_view line) {
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return Error(400, "malformed request line (expected METHOD TARGET HTTP/1.x)");
  }
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!IsToken(method)) return Error(400, "malformed request method");
  if (target.empty()) return Error(400, "empty request target");
  for (unsigned char c : target) {
    if (!IsTargetChar(c)) return Error(400, "request target holds a control character or space");
  }
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
      version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9') {
    return Error(400, "malformed HTTP version");
  }
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1')) {
    return Error(505, "only HTTP/1.0 and HTTP/1.1 are served");
  }
  ParseResult r;
  r.state = ParseState::kComplete;
  r.head.method = std::string(method);
  r.head.path = PathOf(target);
  if (r.head.path.empty()) return Error(400, "request target is not a path");
  r.head.minor_version = version[7] - '0';
  return r;
}

ParseResult ParseHeaderLine(std::string_view line) {
  if (line[0] == ' ' || line[0] == '\t') return Error(400, "folded header lines are not accepted");
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos || !IsToken(line.substr(0, colon))) {
    return Error(400, "malformed header field");
  }
  for (unsigned char c : line.substr(colon + 1)) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      return Error(400, "header field value holds a control character");
    }
  }
  ParseResult ok;
  ok.state = ParseState::kComplete;
  return ok;
}

}  // namespace

ParseResult ParseRequestHead(std::string_view buffer, size_t max_head_bytes) {
  size_t pos = 0;
  // RFC 9112 2.2: empty lines before the request line are ignored.
  while (pos < buffer.size() && (buffer[pos] == '\r' || buffer[pos] == '\n')) ++pos;
  bool first = true;
  ParseResult request;
  while (true) {
    const size_t nl = buffer.find('\n', pos);
    if (nl == std::string_view::npos) {
      // Refuse what can never become a request without waiting for its end
      // (a TLS handshake, binary noise): control bytes, or a method that is
      // not a token.
      const std::string_view partial = buffer.substr(pos);
      for (unsigned char c : partial) {
        if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f) {
          return Error(400, "not an HTTP/1.x request (control bytes in the request head)");
        }
      }
      if (first && !partial.empty() &&
          !IsToken(partial.substr(0, std::min(partial.find(' '), partial.size())))) {
        return Error(400, "malformed request method");
      }
      if (first && buffer.size() - pos > max_head_bytes) {
        return Error(414, "request line too long");
      }
      if (buffer.size() > max_head_bytes) return Error(431, "request header fields too large");
      return ParseResult{};  // incomplete
    }
    if (nl + 1 > max_head_bytes) {
      return first ? Error(414, "request line too long")
                   : Error(431, "request header fields too large");
    }
    std::string_view line = buffer.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    for (char c : line) {
      if (c == '\r' || c == '\0') return Error(400, "stray CR or NUL in the request head");
    }
    pos = nl + 1;
    if (first) {
      request = ParseRequestLine(line);
      if (request.state == ParseState::kError) return request;
      first = false;
      continue;
    }
    if (line.empty()) {  // end of the head
      request.head.head_bytes = pos;
      return request;
    }
    ParseResult header = ParseHeaderLine(line);
    if (header.state == ParseState::kError) return header;
  }
}

}  // namespace mtla::http
