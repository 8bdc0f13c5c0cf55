#pragma once
// A small HTTP/1.1 client for probes and actions: one keep-alive connection to one origin, plain
// or TLS (verified by default), every step under one absolute deadline (kept in one heap of
// deadlines per io_context, with one timer), errors returned as values. The response is read
// with its own parser into one buffer (status line, headers kept as one block, Content-Length /
// chunked / close-delimited bodies). Two ways in: request(), a coroutine that handles every case,
// and start(), callbacks for the common one (a request on a kept-alive plain connection whose
// response comes whole), which hands anything else over to request() mid-way: a probe's steady
// state is one write, one read handler and two allocations (see docs/benchmarks.md).
#include <chrono>
#include <memory>
#include <optional>
#include <string_view>
#include <string>
#include <variant>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>

namespace lastgood::probes {

struct Url {
  std::string scheme;  // "http" | "https"
  std::string host;
  std::string port;
  std::string target;  // path and query, starting with '/'
  bool tls() const { return scheme == "https"; }
  std::string origin() const { return scheme + "://" + host + ":" + port; }
};
std::optional<Url> parse_url(const std::string& url);
// The response head parser both request paths use, on a complete header block (ending in CRLF
// CRLF): an error text for a malformed one (for the fuzzer and tests).
std::optional<std::string> check_response_head(std::string_view block);
// Resolves a Location header against the URL it came from.
std::optional<Url> resolve_location(const Url& base, const std::string& location);

struct TlsOptions {
  std::optional<std::string> ca_file;  // PEM bundle; default: the system CA store
  bool insecure_skip_verify = false;   // explicit opt-out; callers log it loudly
};
// An SSL context that verifies peers against the CA store or file. Throws on a bad CA file
// (checked at start-up, not on the loop).
std::shared_ptr<boost::asio::ssl::context> make_tls_context(const TlsOptions& opts);
// The verifying context over the system CA store, built once (loading the store parses the whole
// CA bundle: not something to redo on the event loop for every request).
std::shared_ptr<boost::asio::ssl::context> default_tls_context();

struct HttpRequest {
  std::string method = "GET";
  std::string target = "/";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct HttpResponse {
  int status = 0;
  std::string head;  // the header lines as received ("Name: value\r\n" each), status line excluded
  std::string body;
  bool reused_connection = false;
  std::optional<std::chrono::duration<double, std::milli>> connect_ms, tls_ms;
  std::chrono::duration<double, std::milli> first_byte_ms{0}, total_ms{0};
  std::optional<std::chrono::system_clock::time_point> cert_not_after;
  std::optional<std::string> header(std::string_view name) const;  // case-insensitive
};

struct HttpError {
  // Where it broke. `resolve` means the watcher could not judge; the rest are the target's doing.
  enum class Stage { resolve, connect, tls, write, read_headers, read_body, body_limit, protocol };
  Stage stage;
  bool timeout = false;
  std::string message;
  // The watcher's own trouble (out of descriptors or memory, no local address, its deadline gone
  // before it could connect): the probe could not judge, whatever the stage.
  bool watcher = false;
  const char* stage_name() const;
};

using HttpResult = std::variant<HttpResponse, HttpError>;

class HttpConnection {
 public:
  HttpConnection(boost::asio::any_io_executor ex, Url origin, std::shared_ptr<boost::asio::ssl::context> tls);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  // Sends one request and reads the response, reusing the kept-alive connection when there is
  // one (and reconnecting once when it turns out dead before any response byte). Everything,
  // resolving included, must finish by `deadline`. Bodies above max_body are an error.
  boost::asio::awaitable<HttpResult> request(HttpRequest req, std::chrono::steady_clock::time_point deadline,
                                             std::size_t max_body);
  // The same with the request's bytes made beforehand by serialize(): a probe sends the same
  // request on every run, so it builds the bytes once.
  boost::asio::awaitable<HttpResult> request(const std::string& bytes, bool head, std::chrono::steady_clock::time_point deadline,
                                             std::size_t max_body);
  // The callback form of request(bytes, ...) for a probe's steady state. When a kept-alive plain
  // connection is open, starts the request without a coroutine and returns true; the sink's
  // http_done() is then called exactly once, later, on the loop (never from inside start()).
  // false: nothing was started (no connection yet, or TLS): co_await request() instead.
  struct Sink {
    virtual void http_done(HttpResult&& result) = 0;

   protected:
    ~Sink() = default;
  };
  bool start(const std::string& bytes, bool head, std::chrono::steady_clock::time_point deadline, std::size_t max_body, Sink& sink);

  // HTTP/1.1 request bytes for this origin (Host, User-Agent and Content-Length added), or the
  // error for a method, target or header that would split the request.
  std::variant<std::string, HttpError> serialize(const HttpRequest& req) const;

  // How many TCP connections this object has opened (observability and tests).
  int connections_opened() const;
  // false: responses keep no header block (header() then finds nothing). For a probe that reads
  // no header: the block's copy was an allocation per run.
  void keep_headers(bool keep);
  const Url& url() const;  // as given at construction
  boost::asio::any_io_executor executor() const;
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lastgood::probes
