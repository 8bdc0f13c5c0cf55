// The response body reader: each framing, fed whole and one byte at a time, with the limits and
// the malformed cases a hostile target sends.
#include <catch2/catch.hpp>

#include <string>

#include "net/http_body.hpp"
#include "net/http_wire.hpp"

using lastgood::net::BodyReader;
using Status = BodyReader::Status;
using Framing = BodyReader::Framing;

namespace {

struct Result {
  Status status;
  std::string body, rest, error;
};

// Feeds `wire` in pieces of `step` bytes (0: all at once), then says the connection closed.
Result read(Framing f, std::uint64_t length, std::size_t max_body, const std::string& wire, std::size_t step) {
  BodyReader r(f, length, max_body);
  std::string in, body;
  std::size_t pos = 0, fed = 0;
  for (;;) {
    const bool eof = fed == wire.size();
    const auto st = r.feed(in, pos, eof, body);
    if (st != Status::more || eof) return {st, body, st == Status::done ? in.substr(pos) : "", r.error()};
    const std::size_t n = step == 0 ? wire.size() - fed : std::min(step, wire.size() - fed);
    in.append(wire, fed, n);
    fed += n;
  }
}

}  // namespace

TEST_CASE("a chunked body with extensions and trailers reads the same whole or a byte at a time", "[http_body]") {
  const std::string wire = "5;name=v\r\nhello\r\n6 \r\n world\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
  for (std::size_t step : {0, 1, 2, 7}) {
    INFO("step " << step);
    auto r = read(Framing::chunked, 0, 1000, wire, step);
    CHECK(r.status == Status::done);
    CHECK(r.body == "hello world");
    CHECK(std::string("NEXT").compare(0, r.rest.size(), r.rest) == 0);  // what followed, as far as it was read
  }
}

TEST_CASE("malformed chunked bodies are refused with the reason", "[http_body]") {
  CHECK(read(Framing::chunked, 0, 1000, "zz\r\nabc\r\n0\r\n\r\n", 1).error == std::string("bad chunk size"));
  CHECK(read(Framing::chunked, 0, 1000, "\r\n", 0).error == std::string("bad chunk size"));
  CHECK(read(Framing::chunked, 0, 1000, "-1\r\n", 0).error == std::string("bad chunk size"));
  CHECK(read(Framing::chunked, 0, 1000, "3\r\nabcX\r\n", 1).error == std::string("bad chunk ending"));
  CHECK(read(Framing::chunked, 0, 1000, std::string(5000, '1'), 100).error == std::string("chunk line too long"));
  CHECK(read(Framing::chunked, 0, 1000, "1\r\na\r\n0\r\n" + std::string(5000, 'T') + "\r\n\r\n", 0).error == std::string("chunk line too long"));
  // A chunk size beyond 64 bits, or beyond the limit, never allocates it.
  CHECK(read(Framing::chunked, 0, 1000, "fffffffffffffffffffff\r\n", 0).status == Status::malformed);
  CHECK(read(Framing::chunked, 0, 1000, "ffffffffffffffff\r\n", 0).status == Status::too_big);
  CHECK(read(Framing::chunked, 0, 10, "6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n", 1).status == Status::too_big);
}

TEST_CASE("a Content-Length body is exactly that long; over the limit it is refused before reading", "[http_body]") {
  auto r = read(Framing::length, 5, 100, "helloEXTRA", 3);
  CHECK(r.status == Status::done);
  CHECK(r.body == "hello");
  CHECK(read(Framing::length, 50, 100, "short", 1).status == Status::more);  // then the caller's read fails
  BodyReader big(Framing::length, 1ULL << 40, 100);
  std::string in, body;
  std::size_t pos = 0;
  CHECK(big.feed(in, pos, false, body) == Status::too_big);
}

TEST_CASE("a close-delimited body ends when the server closes, within the limit", "[http_body]") {
  auto r = read(Framing::close, 0, 100, "until the end", 4);
  CHECK(r.status == Status::done);
  CHECK(r.body == "until the end");
  CHECK(read(Framing::close, 0, 5, "more than five", 2).status == Status::too_big);
}

TEST_CASE("a request for a connection used once says Connection: close, unless it names a Connection itself", "[http_body]") {
  using lastgood::net::with_connection_close;
  CHECK(with_connection_close("GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: lastgood\r\n\r\n") ==
        "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: lastgood\r\nConnection: close\r\n\r\n");
  // The body stays after the head, even when it holds an empty line of its own.
  CHECK(with_connection_close("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\na\r\n\r\nb") ==
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nConnection: close\r\n\r\na\r\n\r\nb");
  // A configured Connection header is the operator's: left as it is, in any case.
  const std::string own = "GET / HTTP/1.1\r\nCONNECTION: keep-alive\r\nHost: a\r\n\r\n";
  CHECK(with_connection_close(own) == own);
  // A header whose name only begins like it is not one.
  CHECK(with_connection_close("GET / HTTP/1.1\r\nConnectionx: 1\r\n\r\n") == "GET / HTTP/1.1\r\nConnectionx: 1\r\nConnection: close\r\n\r\n");
  CHECK(with_connection_close("no head end") == "no head end");
}
