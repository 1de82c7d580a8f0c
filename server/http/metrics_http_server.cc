#include "server/http/metrics_http_server.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "prometheus/text_serializer.h"
#include "server/http/http_request_head.h"
#include "server/http/net_address.h"

namespace mtla::http {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kLingerMaxBytes = 1 << 20;    // discarded after a response
constexpr double kLingerSeconds = 2;           // before the connection is closed
constexpr const char* kMetricsPath = "/metrics";

const char* ReasonPhrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
  }
}

// A whole response; `head_only` leaves the body out (HEAD) but keeps its length.
std::string Response(int status, const std::string& content_type, const std::string& body,
                     bool head_only = false, const std::string& extra_headers = "") {
  std::string out = absl::StrCat("HTTP/1.1 ", status, " ", ReasonPhrase(status),
                                 "\r\nContent-Type: ", content_type,
                                 "\r\nContent-Length: ", body.size(),
                                 "\r\nConnection: close\r\n", extra_headers, "\r\n");
  if (!head_only) out += body;
  return out;
}

std::string ErrorResponse(int status, const std::string& reason,
                          const std::string& extra_headers = "") {
  return Response(status, "text/plain; charset=utf-8", reason + "\n", false, extra_headers);
}

std::string Errno(const char* what) { return absl::StrCat(what, ": ", std::strerror(errno)); }

void SetNonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK); }

struct Connection {
  enum class State { kReading, kWriting, kLingering };
  int fd = -1;
  State state = State::kReading;
  std::string in;
  std::string out;
  size_t sent = 0;
  size_t lingered = 0;
  Clock::time_point deadline;
};

Clock::time_point After(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(seconds));
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address, std::shared_ptr<prometheus::Collectable> registry,
    const MetricsHttpOptions& options) {
  std::string host, port;
  if (!SplitHostPort(address, &host, &port)) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address '", address, "': expected host:port, [v6]:port or :port"));
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.empty() ? "0.0.0.0" : host.c_str(), port.c_str(), &hints, &found);
      rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address '", address, "': ", gai_strerror(rc)));
  }
  auto server = std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer());
  server->options_ = options;
  server->registry_ = std::move(registry);
  std::string error;
  for (addrinfo* a = found; a != nullptr && server->listen_fd_ < 0; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      error = Errno("socket");
      continue;
    }
    // SO_REUSEADDR only (restart past TIME_WAIT); never SO_REUSEPORT, so a
    // port another process listens on is refused.
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0) {
      error = Errno("bind");
      close(fd);
      continue;
    }
    if (listen(fd, 128) != 0) {
      error = Errno("listen");
      close(fd);
      continue;
    }
    server->listen_fd_ = fd;
  }
  freeaddrinfo(found);
  if (server->listen_fd_ < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", address, ": ", error));
  }
  SetNonBlocking(server->listen_fd_);
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  getsockname(server->listen_fd_, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  server->port_ = ntohs(bound.ss_family == AF_INET6
                            ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  if (pipe2(server->wake_fds_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::InternalError(Errno("metrics endpoint: pipe"));
  }
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  if (options.thread_stack_bytes > 0) {
    pthread_attr_setstacksize(&attr, options.thread_stack_bytes);
  }
  const int rc = pthread_create(&server->thread_, &attr, &MetricsHttpServer::ThreadMain,
                                server.get());
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("metrics endpoint: cannot start its thread: ", std::strerror(rc)));
  }
  server->thread_started_ = true;
  return server;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (thread_started_) {
    const char stop = 1;
    (void)!write(wake_fds_[1], &stop, 1);
    pthread_join(thread_, nullptr);
  }
  for (int fd : {listen_fd_, wake_fds_[0], wake_fds_[1]}) {
    if (fd >= 0) close(fd);
  }
}

void* MetricsHttpServer::ThreadMain(void* self) {
  static_cast<MetricsHttpServer*>(self)->Serve();
  return nullptr;
}

void MetricsHttpServer::Serve() {
  std::vector<Connection> connections;
  std::vector<pollfd> fds;
  auto respond = [](Connection& c, std::string response, double timeout) {
    c.out = std::move(response);
    c.sent = 0;
    c.state = Connection::State::kWriting;
    c.deadline = After(timeout);
  };
  auto handle = [&](Connection& c, const RequestHead& head) {
    if (head.path != kMetricsPath) {
      respond(c, ErrorResponse(404, absl::StrCat("not found: this port serves ", kMetricsPath)),
              options_.write_timeout_seconds);
      return;
    }
    if (head.method != "GET" && head.method != "HEAD") {
      respond(c, ErrorResponse(405, absl::StrCat(kMetricsPath, " answers GET and HEAD only"),
                               "Allow: GET, HEAD\r\n"),
              options_.write_timeout_seconds);
      return;
    }
    std::ostringstream body;
    prometheus::TextSerializer().Serialize(body, registry_->Collect());
    respond(c, Response(200, "text/plain; version=0.0.4; charset=utf-8", body.str(),
                        head.method == "HEAD"),
            options_.write_timeout_seconds);
  };

  while (true) {
    fds.clear();
    fds.push_back({wake_fds_[0], POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    Clock::time_point next_deadline = After(1);
    for (const Connection& c : connections) {
      fds.push_back({c.fd, static_cast<short>(c.state == Connection::State::kWriting ? POLLOUT
                                                                                   : POLLIN),
                     0});
      next_deadline = std::min(next_deadline, c.deadline);
    }
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_deadline -
                                                                            Clock::now());
    const int ready = poll(fds.data(), fds.size(), static_cast<int>(std::max<int64_t>(
                                                        0, wait.count() + 1)));
    if (ready < 0 && errno != EINTR) break;
    if (fds[0].revents != 0) break;  // stop requested

    // Existing connections first (indices match `fds` from 2 on).
    const Clock::time_point now = Clock::now();
    for (size_t i = 0; i < connections.size(); ++i) {
      Connection& c = connections[i];
      const short events = fds[i + 2].revents;
      if (c.state == Connection::State::kReading && (events & (POLLIN | POLLHUP | POLLERR))) {
        char buffer[4096];
        const ssize_t n = recv(c.fd, buffer, sizeof(buffer), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
          shutdown(c.fd, SHUT_RDWR);  // the peer left before asking anything
          c.state = Connection::State::kLingering;
          c.deadline = now;
        } else if (n > 0) {
          c.in.append(buffer, static_cast<size_t>(n));
          ParseResult parsed = ParseRequestHead(c.in, options_.max_head_bytes);
          if (parsed.state == ParseState::kComplete) {
            handle(c, parsed.head);
          } else if (parsed.state == ParseState::kError) {
            respond(c, ErrorResponse(parsed.error_status, parsed.error_reason),
                    options_.write_timeout_seconds);
          }
        }
      } else if (c.state == Connection::State::kWriting && (events & (POLLOUT | POLLERR | POLLHUP))) {
        const ssize_t n = send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
        if (n > 0) c.sent += static_cast<size_t>(n);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
          c.state = Connection::State::kLingering;
          c.deadline = now;  // the peer is gone: close at once
        } else if (c.sent == c.out.size()) {
          // Sent: stop writing, then read (and drop) what the client still
          // sends, so closing does not reset the connection under its reply.
          shutdown(c.fd, SHUT_WR);
          c.state = Connection::State::kLingering;
          c.deadline = After(kLingerSeconds);
          c.out.clear();
          c.in.clear();
        }
      } else if (c.state == Connection::State::kLingering && (events & (POLLIN | POLLHUP | POLLERR))) {
        char buffer[4096];
        const ssize_t n = recv(c.fd, buffer, sizeof(buffer), 0);
        if (n > 0) c.lingered += static_cast<size_t>(n);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) || c.lingered > kLingerMaxBytes) {
          c.deadline = now;
        }
      }
      if (Clock::now() >= c.deadline) {
        if (c.state == Connection::State::kReading) {
          respond(c, ErrorResponse(408, "the request was not complete in time"),
                  options_.write_timeout_seconds);
        } else {
          close(c.fd);
          c.fd = -1;
        }
      }
    }
    connections.erase(std::remove_if(connections.begin(), connections.end(),
                                     [](const Connection& c) { return c.fd < 0; }),
                      connections.end());

    if (fds[1].revents & POLLIN) {
      while (true) {
        const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        if (static_cast<int>(connections.size()) >= options_.max_connections) {
          const std::string busy = ErrorResponse(503, "too many open connections; retry");
          (void)!send(fd, busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
          close(fd);
          continue;
        }
        Connection c;
        c.fd = fd;
        c.deadline = After(options_.read_timeout_seconds);
        connections.push_back(std::move(c));
      }
    }
  }
  for (Connection& c : connections) close(c.fd);
}

}  // namespace mtla::http
