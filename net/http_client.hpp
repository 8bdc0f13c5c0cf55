#pragma once
// A small HTTP/1.1 client for probes, actions and notices: one keep-alive connection to one
// origin, plain or TLS (verified by default), errors returned as values.
//
// The timeout rule: every step of a request (resolving, connecting, the handshake, writing,
// reading) runs under one absolute deadline, kept in the io_context's Deadlines (net/deadlines.hpp).
// When it passes, the socket's operations are cancelled and the error the step returns is a
// timeout of that step. A deadline that has passed before the connect is the watcher's lateness
// (HttpError::watcher), not the target's.
//
// Two ways in: request(), a coroutine that handles every case (http_client.cpp), and start(),
// callbacks for a probe's steady state, a request on a kept-alive plain connection whose response
// comes whole (http_fast_path.cpp). start() hands anything else over to request() mid-way, with
// the bytes written and read so far: one implementation of the rare cases.
#include <chrono>
#include <memory>
#include <string>
#include <variant>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>

#include "net/http_types.hpp"
#include "net/tls.hpp"
#include "net/url.hpp"

namespace lastgood::net {

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
  // false: responses keep no header block (header() then finds nothing), for a probe that reads
  // no header.
  void keep_headers(bool keep);
  // Counts this connection in its io_context's ConnectionBudget (net/conn_budget.hpp): probes'
  // connections do, so that thousands of targets never take the descriptors lastgood needs.
  void limit_by_budget();
  const Url& url() const;  // as given at construction
  boost::asio::any_io_executor executor() const;
  void close();

  struct Impl;  // net/http_impl.hpp

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace lastgood::net
