#include "tests/common/metrics_scrape.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace mtla::test_support {

int ConnectLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string HttpExchange(int port, const std::string& request, double wait_seconds) {
  const int fd = ConnectLoopback(port);
  if (fd < 0) return "";
  const timeval tv{static_cast<time_t>(wait_seconds),
                   static_cast<suseconds_t>((wait_seconds - static_cast<time_t>(wait_seconds)) * 1e6)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer (and close) before reading it all
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buffer[16384];
  while (true) {
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    response.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return response;
}

int HttpStatus(const std::string& response) {
  int status = 0;
  if (response.rfind("HTTP/1.", 0) != 0 ||
      std::sscanf(response.c_str(), "HTTP/1.%*d %d", &status) != 1) {
    return 0;
  }
  return status;
}

int HttpGet(int port, const std::string& path, std::string* body) {
  body->clear();
  const std::string response = HttpExchange(port, absl::StrCat("GET ", path,
                                                               " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                               "Connection: close\r\n\r\n"));
  const size_t header_end = response.find("\r\n\r\n");
  if (header_end == std::string::npos || response.rfind("HTTP/1.", 0) != 0) return 0;
  const std::string headers = response.substr(0, header_end);
  std::string content = response.substr(header_end + 4);
  const int status = HttpStatus(response);
  if (status == 0) return 0;
  std::string lower = headers;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.find("transfer-encoding: chunked") != std::string::npos) {
    std::string dechunked;
    size_t pos = 0;
    while (pos < content.size()) {
      const size_t line_end = content.find("\r\n", pos);
      if (line_end == std::string::npos) return 0;
      const size_t size = std::stoul(content.substr(pos, line_end - pos), nullptr, 16);
      if (size == 0) break;
      dechunked.append(content, line_end + 2, size);
      pos = line_end + 2 + size + 2;
    }
    content = std::move(dechunked);
  }
  *body = std::move(content);
  return status;
}

std::optional<double> MetricValue(const std::string& text, const std::string& name,
                                  const std::string& label_filter) {
  std::optional<double> sum;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t end = line.find_first_of("{ ");
    if (end == absl::string_view::npos || line.substr(0, end) != name) continue;
    if (!label_filter.empty() && line.find(label_filter) == absl::string_view::npos) continue;
    const size_t space = line.rfind(' ');
    if (space == absl::string_view::npos) continue;
    const double value = std::strtod(std::string(line.substr(space + 1)).c_str(), nullptr);
    sum = sum.value_or(0.0) + value;
  }
  return sum;
}

}  // namespace mtla::test_support
