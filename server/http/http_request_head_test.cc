#include "server/http/http_request_head.h"

#include <string>

#include "gtest/gtest.h"

namespace mtla::http {
namespace {

constexpr size_t kMax = 8192;

TEST(HttpRequestHeadTest, ParsesAGetWithHeadersAndQuery) {
  const std::string request = "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\nBODY";
  ParseResult r = ParseRequestHead(request, kMax);
  ASSERT_EQ(r.state, ParseState::kComplete) << r.error_reason;
  EXPECT_EQ(r.head.method, "GET");
  EXPECT_EQ(r.head.path, "/metrics");
  EXPECT_EQ(r.head.minor_version, 1);
  EXPECT_EQ(r.head.head_bytes, request.size() - 4);
}

TEST(HttpRequestHeadTest, AcceptsBareLineFeedsLeadingBlankLinesAndAbsoluteForm) {
  ParseResult r = ParseRequestHead("\r\n\nHEAD http://host:9090/metrics HTTP/1.0\nHost: a\n\n", kMax);
  ASSERT_EQ(r.state, ParseState::kComplete) << r.error_reason;
  EXPECT_EQ(r.head.method, "HEAD");
  EXPECT_EQ(r.head.path, "/metrics");
  EXPECT_EQ(r.head.minor_version, 0);
  r = ParseRequestHead("OPTIONS * HTTP/1.1\r\n\r\n", kMax);
  ASSERT_EQ(r.state, ParseState::kComplete);
  EXPECT_EQ(r.head.path, "*");
}

TEST(HttpRequestHeadTest, EveryPrefixOfAValidRequestIsIncomplete) {
  const std::string request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: b\r\n\r\n";
  for (size_t n = 0; n < request.size(); ++n) {
    EXPECT_EQ(ParseRequestHead(request.substr(0, n), kMax).state, ParseState::kIncomplete) << n;
  }
  EXPECT_EQ(ParseRequestHead(request, kMax).state, ParseState::kComplete);
}

TEST(HttpRequestHeadTest, RejectsMalformedRequestsWithTheRightStatus) {
  struct Case {
    std::string request;
    int status;
  };
  const Case cases[] = {
      {std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 15), 400},  // TLS
      {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},                     // HTTP/2 preface
      {"GET /metrics\r\n\r\n", 400},                                 // HTTP/0.9
      {"GET  /metrics HTTP/1.1\r\n\r\n", 400},                       // double space
      {"GET /metrics HTTP/1.1 x\r\n\r\n", 400},
      {"G(T /metrics HTTP/1.1\r\n\r\n", 400},
      {"GET metrics HTTP/1.1\r\n\r\n", 400},                         // not a path
      {"GET /metrics HTTP/1.x\r\n\r\n", 400},
      {"GET /metrics HTTP/2.0\r\n\r\n", 505},
      {"GET /metrics HTTP/1.1\r\nNoColon\r\n\r\n", 400},
      {"GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n", 400},
      {"GET /metrics HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400},
      {"GET /metrics HTTP/1.1\r\nA: b\x01\r\n\r\n", 400},
      {"GET /met\rrics HTTP/1.1\r\n\r\n", 400},
      {std::string("GET /metrics HTTP/1.1\r\nA: \0\r\n\r\n", 29), 400},
  };
  for (const Case& c : cases) {
    ParseResult r = ParseRequestHead(c.request, kMax);
    EXPECT_EQ(r.state, ParseState::kError) << c.request;
    EXPECT_EQ(r.error_status, c.status) << c.request;
    EXPECT_FALSE(r.error_reason.empty());
  }
}

TEST(HttpRequestHeadTest, RefusesNonHttpBytesBeforeTheLineEnds) {
  // A TLS ClientHello's first bytes, with no line end in sight.
  EXPECT_EQ(ParseRequestHead(std::string("\x16\x03\x01\x00\xa5\x01", 6), kMax).error_status, 400);
  EXPECT_EQ(ParseRequestHead("G{T /metr", kMax).error_status, 400);
  EXPECT_EQ(ParseRequestHead("GET /metrics HTTP/1.1\r\nHost: a\x01", kMax).error_status, 400);
  EXPECT_EQ(ParseRequestHead("GET /metr", kMax).state, ParseState::kIncomplete);
}

TEST(HttpRequestHeadTest, BoundsTheHead) {
  const std::string long_line = "GET /" + std::string(kMax, 'a');
  EXPECT_EQ(ParseRequestHead(long_line, kMax).error_status, 414);
  EXPECT_EQ(ParseRequestHead(long_line + " HTTP/1.1\r\n\r\n", kMax).error_status, 414);
  std::string many_headers = "GET /metrics HTTP/1.1\r\n";
  while (many_headers.size() <= kMax) many_headers += "X-Filler: 0123456789abcdef\r\n";
  EXPECT_EQ(ParseRequestHead(many_headers, kMax).error_status, 431);
  EXPECT_EQ(ParseRequestHead(many_headers + "\r\n", kMax).error_status, 431);
  // Exactly at the bound is fine.
  std::string exact = "GET /metrics HTTP/1.1\r\nX: ";
  exact += std::string(kMax - exact.size() - 4, 'y') + "\r\n\r\n";
  ASSERT_EQ(exact.size(), kMax);
  EXPECT_EQ(ParseRequestHead(exact, kMax).state, ParseState::kComplete);
}

}  // namespace
}  // namespace mtla::http
