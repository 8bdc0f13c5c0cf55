#pragma once
// The one HTTP server of lastgood (Beast, coroutines): /metrics, /healthz, /readyz, /api/v1/...
// Request handling is a function from request to response (Handler, api/routes.cpp); this class only
// owns sockets, limits and keep-alive.
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace lastgood::watchdog {

struct HttpReq {
  std::string method;
  std::string target;  // path and query
  std::string body;
  std::string authorization;
  std::string remote;  // "ip:port" of the client
  std::string host = {};           // the Host header
  std::string forwarded_for = {};  // the X-Forwarded-For header (trusted only from trusted_proxies)
};

// Parses one whole request as the server does (Beast's parser, the same header and body limits)
// into an HttpReq; nullopt with the reason in *error when the bytes are not one (for the fuzzing
// harness of the request router, fuzz/fuzz_router).
std::optional<HttpReq> parse_http_request(std::string_view bytes, std::string remote, std::string* error = nullptr);

struct HttpRes {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // When set, the body is written a piece at a time (chunked), each piece made by this function on
  // the worker thread: it appends the next piece to its argument and returns false after the last.
  // For /metrics at 10 000 probes, so that a scrape never holds the whole 16 MB text.
  std::function<bool(std::string&)> stream = {};
  // When set, the response is this coroutine's (run on the loop): a route that must ask another
  // server first (a vote taken through etcd by any replica, ha.md). Status and body above unused.
  std::function<boost::asio::awaitable<HttpRes>()> later = {};
  static HttpRes json_error(int status, const std::string& message);
};

// How much of lastgood the API may take (config "api"). A client may not hold more than its share:
// descriptors are what the probes need too.
struct ServerLimits {
  // Concurrent connections; 0: an eighth of the open-files limit, between 16 and 1024. Past it a
  // new connection is accepted and closed at once.
  std::size_t max_connections = 0;
  // A client must send each whole request within this time (first request and keep-alive alike).
  std::chrono::milliseconds idle_timeout{10'000};
};

class Server {
 public:
  using Handler = std::function<HttpRes(const HttpReq&)>;
  // Binds at once (throws std::system_error with the address on failure).
  Server(boost::asio::io_context& ioc, const std::string& listen, Handler handler, ServerLimits limits = {});
  ~Server();
  void start();
  void stop();
  boost::asio::ip::tcp::endpoint local_endpoint() const;

  static constexpr std::size_t kBodyLimit = 64 * 1024;
  std::size_t connections() const;      // open now
  std::size_t max_connections() const;  // in force (after the default was sized)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lastgood::watchdog
