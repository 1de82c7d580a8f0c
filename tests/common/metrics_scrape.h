// Loopback HTTP and Prometheus-text helpers shared by the integration tests.
#ifndef MTLA_TESTS_COMMON_METRICS_SCRAPE_H_
#define MTLA_TESTS_COMMON_METRICS_SCRAPE_H_

#include <optional>
#include <string>

namespace mtla::test_support {

// A TCP connection to 127.0.0.1:port (the caller closes it); -1 on failure.
int ConnectLoopback(int port);

// Sends `request` (raw bytes) to 127.0.0.1:port and returns every byte of
// the answer until the server closes the connection or nothing arrives for
// `wait_seconds`; empty when the connection failed.
std::string HttpExchange(int port, const std::string& request, double wait_seconds = 5);

// The status code of a raw HTTP/1.x response; 0 when it is not one.
int HttpStatus(const std::string& response);

// GET http://127.0.0.1:port/path. Returns the HTTP status (0 when the
// connection or the read failed) and the body (de-chunked if need be).
int HttpGet(int port, const std::string& path, std::string* body);

// Sum of the samples of `name` (exact metric name, any labels) whose label
// set contains `label_filter`; nullopt when there is none.
std::optional<double> MetricValue(const std::string& text, const std::string& name,
                                  const std::string& label_filter = "");

}  // namespace mtla::test_support

#endif  // MTLA_TESTS_COMMON_METRICS_SCRAPE_H_
