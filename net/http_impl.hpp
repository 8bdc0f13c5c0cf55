#pragma once
// HttpConnection's insides, shared by its two request paths: the coroutine path
// (http_client.cpp) and the callback fast path (http_fast_path.cpp). Not for use outside net/.
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include "net/conn_budget.hpp"
#include "net/deadlines.hpp"
#include "net/http_client.hpp"
#include "net/http_wire.hpp"
#include "net/supervise.hpp"
#include "net/tls_socket.hpp"

namespace lastgood::net {

using HttpClock = std::chrono::steady_clock;
using HttpMs = std::chrono::duration<double, std::milli>;

// One request's progress on one connection. The fast path hands it over to the coroutine path
// with the request's bytes written so far (`sent`) and the response's bytes read so far (`in`);
// the exchange reports back whether the connection may be kept and whether any byte came.
struct Exchange {
  const std::string* req = nullptr;
  bool head = false;  // a HEAD request: the response has no body
  std::size_t max_body = 0;
  HttpClock::time_point t0{};
  std::size_t sent = 0;
  std::string in;
  bool keep_alive = false;
  bool nothing_received = true;
};

struct HttpConnection::Impl final : Deadlines::Waiter, ConnectionBudget::Member {
  boost::asio::any_io_executor ex;
  Url origin;
  std::shared_ptr<boost::asio::ssl::context> tls_ctx;
  std::unique_ptr<boost::asio::ip::tcp::socket> plain;
  std::unique_ptr<TlsSocket> secure;  // OpenSSL on the socket itself (net/tls_socket.hpp)
  std::optional<std::chrono::system_clock::time_point> cert_not_after;
  // The last TLS session with this origin, offered again when reconnecting (resumption: no full
  // handshake). Freed with the connection.
  struct SessionFree {
    void operator()(SSL_SESSION* s) const { SSL_SESSION_free(s); }
  };
  std::unique_ptr<SSL_SESSION, SessionFree> session;
  int opened = 0;
  // The request's deadline waits in the io_context's Deadlines: when it passes, the socket's
  // operations are cancelled and timed_out is set.
  Deadlines& deadlines;
  bool timed_out = false;
  bool keep_head = true;  // keep_headers()
  // A probe's connection counts in the loop's ConnectionBudget (limit_by_budget()); others
  // (actions, notices, etcd) use the reserve outside it.
  ConnectionBudget* budget = nullptr;
  void evict() override { close(); }  // idle longest while the budget was full
  // A request ends on a connection that stays open: it may be evicted until the next one starts.
  void kept() {
    if (budget && !budget->idle(*this)) close();  // past the share kept alive: per run
  }
  void in_use() {
    if (budget) budget->busy(*this);
  }

  explicit Impl(boost::asio::any_io_executor e) : ex(e), deadlines(Deadlines::of(ex)) {}
  ~Impl() { deadlines.remove(*this); }

  bool connected() const { return plain || secure; }
  boost::asio::ip::tcp::socket& socket() { return plain ? *plain : secure->next_layer(); }
  void close();
  void expired() override;
  void arm(HttpClock::time_point deadline) {
    timed_out = false;
    deadlines.add(*this, deadline);
  }
  void disarm() { deadlines.remove(*this); }

  // ---- the coroutine path (http_client.cpp) ----
  boost::asio::awaitable<std::optional<HttpError>> connect(HttpClock::time_point deadline, HttpResponse& resp);
  template <class Stream>
  boost::asio::awaitable<std::optional<HttpError>> exchange(Stream& stream, Exchange& x, HttpResponse& resp);
  // Handles every case; `x` carries what the fast path did before handing over (or nothing).
  boost::asio::awaitable<HttpResult> request(HttpClock::time_point deadline, Exchange x);

  // ---- what both paths share ----
  // A kept-alive connection the server had already closed: a request that failed on a reused
  // connection before any byte of the response, not by timeout and with time left, is tried
  // once more on a fresh connection.
  bool stale(bool reused, bool timeout, bool nothing_received, HttpClock::time_point deadline) const {
    return reused && !timeout && nothing_received && HttpClock::now() < deadline;
  }
  // Room for a read at the end of `in`; returns where it starts. With settle(), the two halves
  // of a read awaited directly in a loop (a nested coroutine would be a frame allocated and
  // resumed on every read).
  static std::size_t grow(std::string& in);
  static boost::system::error_code settle(std::string& in, std::size_t used, boost::system::error_code ec, std::size_t n);
  // Writes what the socket takes at once (a request nearly always fits in its send buffer).
  static std::size_t write_now(boost::asio::ip::tcp::socket& s, const std::string& req, boost::system::error_code& ec);
  HttpError write_error(const boost::system::error_code& ec) const;
  HttpError head_read_error(const boost::system::error_code& ec) const;
  static HttpError malformed(std::string_view why);
  static HttpError body_too_big(std::size_t max_body);
  // Takes what the head says into resp; returns whether the connection may be kept alive.
  bool take_head(const Head& h, HttpClock::time_point t0, HttpResponse& resp) const;

  // ---- the fast path (http_fast_path.cpp) ----
  struct Fast {
    HttpConnection::Sink* sink = nullptr;
    const std::string* req = nullptr;
    bool head = false;
    std::size_t max_body = 0;
    HttpClock::time_point t0{}, deadline{};
    std::string in;
  };
  Fast fast;
  Lifetime life;  // the fast path's handlers and the hand-over coroutine; ends with the connection

  bool start(const std::string& req, bool head, HttpClock::time_point deadline, std::size_t max_body, HttpConnection::Sink& sink);
  void read_more();
  void on_read(boost::system::error_code ec);
  void fail(HttpError err);
  void deliver(HttpResult&& r);
  void hand_over(std::size_t sent, std::string in);
  boost::asio::awaitable<void> finish_handed_over(Exchange x);
};

}  // namespace lastgood::net
