// lastgood reads HTTP responses with its own parser (net/http_wire.cpp, net/http_client.cpp).
// These cases drive it with exact bytes from a scripted server on 127.0.0.1: chunked bodies with extensions and
// trailers, interim 1xx responses, bodies delimited by the close, HTTP/1.0, responses delivered
// one byte at a time, and the malformed framings it must refuse rather than guess.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include "fixtures.hpp"
#include "net/http_client.hpp"

using namespace testing;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
namespace net = lastgood::net;

namespace {

// Answers the n-th request on a connection with replies[n] (then closes after the last one).
// With byte_by_byte, every reply is written one byte per write, with TCP_NODELAY.
class ScriptedServer {
 public:
  explicit ScriptedServer(std::vector<std::string> replies, bool byte_by_byte = false)
      : replies_(std::move(replies)), byte_by_byte_(byte_by_byte), server_([this](RawServer&, RawServer::Socket sock) {
          ++connections;
          boost::system::error_code ec;
          sock->set_option(tcp::no_delay(true), ec);
          asio::streambuf buf;
          for (const auto& reply : replies_) {
            asio::read_until(*sock, buf, "\r\n\r\n", ec);
            if (ec) break;
            buf.consume(buf.size());
            if (byte_by_byte_) {
              for (char c : reply) asio::write(*sock, asio::buffer(&c, 1), ec);
            } else {
              asio::write(*sock, asio::buffer(reply), ec);
            }
          }
          sock->close(ec);
        }),
        port(server_.port()) {}
  std::atomic<int> connections{0};

 private:
  std::vector<std::string> replies_;
  bool byte_by_byte_;
  RawServer server_;

 public:
  const unsigned short port;
};

// Requests go through HttpConnection::request() (the coroutine) or, with via_start, through
// HttpConnection::start() (the callbacks a probe's steady state runs on) whenever it takes them:
// on a kept-alive plain connection, so from the second request on. Every case runs both ways.
struct Client : net::HttpConnection::Sink {
  asio::io_context ioc;
  net::HttpConnection conn;
  bool via_start;
  int started = 0;  // requests start() took
  std::optional<net::HttpResult> done;
  Client(unsigned short port, bool start_when_possible)
      : conn(ioc.get_executor(), *net::parse_url("http://127.0.0.1:" + std::to_string(port) + "/"), nullptr),
        via_start(start_when_possible) {}
  void http_done(net::HttpResult&& r) override {
    REQUIRE_FALSE(done);  // exactly once
    done = std::move(r);
  }
  net::HttpResult get(std::size_t max_body = 1 << 20, const std::string& method = "GET",
                         std::chrono::milliseconds timeout = std::chrono::seconds(3)) {
    net::HttpRequest req;
    req.method = method;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    if (via_start) {
      const auto bytes = std::get<std::string>(conn.serialize(req));
      done.reset();
      if (conn.start(bytes, method == "HEAD", deadline, max_body, *this)) {
        ++started;
        REQUIRE_FALSE(done);  // never from inside start()
        ioc.restart();
        while (!done && ioc.run_one()) {
        }
        REQUIRE(done);
        return std::move(*done);
      }
    }
    return run_sync(ioc, conn.request(req, deadline, max_body));
  }
};

net::HttpResponse ok(const net::HttpResult& r) {
  if (auto* e = std::get_if<net::HttpError>(&r)) FAIL("request failed: " << e->message);
  return std::get<net::HttpResponse>(r);
}
net::HttpError failed(const net::HttpResult& r) {
  REQUIRE(std::holds_alternative<net::HttpError>(r));
  return std::get<net::HttpError>(r);
}

}  // namespace

TEST_CASE("chunked bodies, interim responses and empty bodies keep the connection", "[framing]") {
  ScriptedServer s({
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Test:  spaced value \t\r\n\r\n"
      "4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: yes\r\n\r\n",
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello",
      "HTTP/1.1 204 No Content\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",  // a HEAD: the length announced, no body sent
      "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nConnection: close\r\n\r\nok",
  });
  Client c(s.port, GENERATE(false, true));
  auto a = ok(c.get());
  CHECK(a.status == 200);
  CHECK(a.body == "Wikipedia in\r\n\r\nchunks.");
  CHECK(a.header("x-test") == "spaced value");  // case-insensitive name, value trimmed
  CHECK_FALSE(a.header("X-Trailer"));            // trailers are read past, not merged
  auto b = ok(c.get());
  CHECK(b.status == 201);
  CHECK(b.body == "hello");
  CHECK(b.reused_connection);
  auto d = ok(c.get());
  CHECK(d.status == 204);
  CHECK(d.body.empty());
  auto h = ok(c.get(1 << 20, "HEAD"));
  CHECK(h.status == 200);
  CHECK(h.body.empty());
  auto e = ok(c.get());
  CHECK(e.body == "ok");
  CHECK(c.conn.connections_opened() == 1);  // all five on one connection
  ok(c.get());                              // the server said close: a new connection
  CHECK(c.conn.connections_opened() == 2);
  CHECK(c.started == (c.via_start ? 4 : 0));  // the four requests on a kept-alive connection
}

TEST_CASE("a response delivered one byte at a time is read whole", "[framing]") {
  ScriptedServer s({"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-A: b\r\n\r\nhello world",
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"},
                   /*byte_by_byte=*/true);
  Client c(s.port, GENERATE(false, true));
  CHECK(ok(c.get()).body == "hello world");
  CHECK(ok(c.get()).body == "abc");
  CHECK(c.conn.connections_opened() == 1);
}

TEST_CASE("HTTP/1.0 and bodies delimited by the close are not reused", "[framing]") {
  // HTTP/1.0 without keep-alive, and a body that runs to the close.
  auto [reply, body] = GENERATE(table<std::string, std::string>({{"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "ok"},
                                                                 {"HTTP/1.1 200 OK\r\n\r\nuntil the end", "until the end"}}));
  ScriptedServer s({reply});
  Client c(s.port, GENERATE(false, true));
  CHECK(ok(c.get()).body == body);
  CHECK(ok(c.get()).body == body);
  CHECK(c.conn.connections_opened() == 2);
}

TEST_CASE("framings that cannot be trusted are refused", "[framing]") {
  // Via start(), a good response first, so that the bad one comes on the kept-alive connection.
  const bool via_start = GENERATE(false, true);
  auto refused = [via_start](const std::string& reply, const char* why, std::size_t max_body = 1 << 20) {
    std::vector<std::string> replies{reply};
    if (via_start) replies.insert(replies.begin(), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    ScriptedServer s(replies);
    Client c(s.port, via_start);
    if (via_start) ok(c.get());
    auto e = failed(c.get(max_body));
    CHECK(c.started == (via_start ? 1 : 0));
    INFO(reply);
    CHECK_THAT(e.message, Catch::Contains(why));
    return e.stage;
  };
  using Stage = net::HttpError::Stage;
  CHECK(refused("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "conflicting Content-Length") == Stage::protocol);
  CHECK(refused("HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok", "bad Content-Length") == Stage::protocol);
  CHECK(refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok", "unsupported Transfer-Encoding") == Stage::protocol);
  CHECK(refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n", "bad chunk size") == Stage::protocol);
  CHECK(refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n", "bad chunk ending") == Stage::protocol);
  CHECK(refused("HTTP/1.1 200 OK\r\n folded: header\r\n\r\n", "bad header line") == Stage::protocol);
  CHECK(refused("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "bad header line") == Stage::protocol);
  CHECK(refused("HTTP/1.1 200 OK\r\nX-A: a\nb\r\n\r\n", "bad header value") == Stage::protocol);
  CHECK(refused(std::string("HTTP/1.1 200 OK\r\nX-A: a\0b\r\n\r\n", 29), "bad header value") == Stage::protocol);
  CHECK(refused("HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n", "bad header value") == Stage::protocol);
  CHECK(refused("HTTP/1.1 20 OK\r\n\r\n", "bad status line") == Stage::protocol);
  CHECK(refused("HTTP/1.1 200 OK\r\nX: " + std::string(70 * 1024, 'a') + "\r\n\r\n", "exceed 64 KiB") == Stage::protocol);
  CHECK(refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n", "body larger than 8 bytes", 8) ==
        Stage::body_limit);
  CHECK(refused("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n012345678", "body larger than 8 bytes", 8) == Stage::body_limit);
  CHECK(refused("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "reading the body") == Stage::read_body);
}

TEST_CASE("a kept-alive connection the server has closed is tried again once, on a new one", "[framing]") {
  ScriptedServer s({"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"});  // one reply per connection, then the close
  Client c(s.port, GENERATE(false, true));
  CHECK(ok(c.get()).body == "a");
  auto again = ok(c.get());  // written on the closed connection: no response byte comes, so a new one
  CHECK(again.body == "a");
  CHECK_FALSE(again.reused_connection);
  CHECK(c.conn.connections_opened() == 2);
  CHECK(c.started == (c.via_start ? 1 : 0));  // start() took it, then handed it to request()
}

TEST_CASE("the deadline holds on a kept-alive connection that stops answering", "[framing]") {
  RawServer server([](RawServer& self, RawServer::Socket sock) {
    boost::system::error_code ec;
    asio::streambuf buf;
    asio::read_until(*sock, buf, "\r\n\r\n", ec);
    asio::write(*sock, asio::buffer(std::string("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")), ec);
    self.hold(sock);  // reads nothing more, answers nothing more
  });
  const bool via_start = GENERATE(false, true);
  Client c(server.port(), via_start);
  CHECK(ok(c.get()).body == "ok");
  const auto t0 = std::chrono::steady_clock::now();
  net::HttpResult r = c.get(1 << 20, "GET", std::chrono::milliseconds(300));
  CHECK(c.started == (via_start ? 1 : 0));
  auto e = failed(r);
  CHECK(e.timeout);
  CHECK(e.stage == net::HttpError::Stage::read_headers);
  CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(300));
  CHECK(c.ioc.stopped());  // nothing left pending: no timer, no read
}
