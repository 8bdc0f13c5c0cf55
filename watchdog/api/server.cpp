#include "watchdog/api/server.hpp"

#include "watchdog/json_text.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <list>
#include <boost/asio/steady_timer.hpp>
#include <sched.h>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "net/supervise.hpp"

namespace lastgood::watchdog {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace boost::asio::experimental::awaitable_operators;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

HttpRes HttpRes::json_error(int status, const std::string& message) {
  return HttpRes{status, "application/json", json_text(nlohmann::json{{"error", message}})};
}

namespace {

tcp::endpoint parse_listen(const std::string& listen) {
  auto colon = listen.rfind(':');
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  return {asio::ip::make_address(host), static_cast<unsigned short>(std::stoi(listen.substr(colon + 1)))};
}

// The limits of every request the server reads.
void limit(http::request_parser<http::string_body>& parser) {
  parser.body_limit(Server::kBodyLimit);
  parser.header_limit(16 * 1024);
}

HttpReq to_http_req(http::request<http::string_body>& req, const std::string& remote) {
  return HttpReq{std::string(req.method_string()), std::string(req.target()), std::move(req.body()),
                 std::string(req[http::field::authorization]), remote, std::string(req[http::field::host]),
                 std::string(req["X-Forwarded-For"])};
}

}  // namespace

struct Server::Impl {
  asio::io_context& ioc;
  tcp::acceptor acceptor;
  Handler handler;
  ServerLimits limits;
  bool stopped = false;
  std::atomic<bool> stopping{false};  // stopped, for the worker
  // Kept by every session as well as by Impl: a session's frame may be destroyed after Impl
  // (the io_context outliving or outlasting the Server), and its bookkeeping must still be there.
  struct Sessions {
    std::size_t open = 0;  // sessions now
    std::list<beast::tcp_stream*> waiting;  // waiting for a request, oldest first (nullptr: evicted)
  };
  std::shared_ptr<Sessions> sessions = std::make_shared<Sessions>();
  int reserve = -1;      // a descriptor kept back: closed to accept-and-drop when none is left
  asio::steady_timer backoff{ioc};
  std::chrono::steady_clock::time_point last_log{};
  std::uint64_t unlogged = 0;
  net::Lifetime life;  // the accept loop and the sessions; ended by stop()
  asio::thread_pool worker{1};  // streamed bodies are made off the loop (HttpRes::stream)

  Impl(asio::io_context& io, const std::string& listen, Handler h, ServerLimits l)
      : ioc(io), acceptor(io), handler(std::move(h)), limits(l) {
    if (limits.max_connections == 0) {
      rlimit rl{};
      const std::size_t fds = ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? rl.rlim_cur : 8192;
      limits.max_connections = std::clamp<std::size_t>(fds / 8, 16, 1024);
    }
    reserve = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    auto ep = parse_listen(listen);
    acceptor.open(ep.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    boost::system::error_code ec;
    acceptor.bind(ep, ec);
    if (ec) throw std::system_error(ec, "cannot listen on " + listen);
    acceptor.listen(asio::socket_base::max_listen_connections);
    // The worker runs at nice +5: a scrape of 10 000 probes' metrics is ~0.5 s of CPU, and on one
    // core it gets about a quarter of it while the loop is busy, not the loop's whole turn. Not
    // SCHED_IDLE: a loop saturated by more targets than it can serve never leaves the CPU idle,
    // and /metrics (what shows the overload) then never answered (issue 21).
    asio::post(worker, [] {
      if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 5) != 0) spdlog::debug("http worker: nice +5 refused; running at normal priority");
    });
  }

  // Counts a session for its whole life, however it ends.
  struct Slot {
    std::shared_ptr<Sessions> s;
    explicit Slot(std::shared_ptr<Sessions> x) : s(std::move(x)) { ++s->open; }
    ~Slot() { --s->open; }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
  };
  // Sessions waiting for a request, oldest first: when every slot is taken, the oldest waiting one
  // is closed to make room (as nginx reuses idle keep-alive connections), so that clients who hold
  // connections without sending anything cannot lock out a scrape or an approver.
  struct WaitMark {
    std::shared_ptr<Sessions> s;
    std::list<beast::tcp_stream*>::iterator it;
    WaitMark(std::shared_ptr<Sessions> x, beast::tcp_stream* st) : s(std::move(x)), it(s->waiting.insert(s->waiting.end(), st)) {}
    ~WaitMark() { s->waiting.erase(it); }
    WaitMark(const WaitMark&) = delete;
    WaitMark& operator=(const WaitMark&) = delete;
  };
  bool evict_oldest_waiting() {
    auto& waiting = sessions->waiting;
    if (waiting.empty()) return false;
    beast::tcp_stream* s = waiting.front();
    waiting.front() = nullptr;
    if (!s) return false;
    boost::system::error_code ignored;
    s->socket().shutdown(tcp::socket::shutdown_both, ignored);
    s->socket().cancel(ignored);
    // Moved to the back so that the next eviction picks another while this one unwinds.
    waiting.splice(waiting.end(), waiting, waiting.begin());
    return true;
  }

  // On every response (design.md, HTTP surface): no content sniffing; the page loads nothing from
  // elsewhere and is never framed.
  template <typename Message>
  static void security_headers(Message& m) {
    m.set("X-Content-Type-Options", "nosniff");
    m.set("X-Frame-Options", "DENY");
    m.set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
  }

  asio::awaitable<void> session(tcp::socket sock) {
    Slot slot(sessions);
    beast::tcp_stream stream(std::move(sock));
    beast::flat_buffer buffer;
    boost::system::error_code rec;
    std::string remote;
    auto ep = stream.socket().remote_endpoint(rec);
    if (!rec) remote = ep.address().to_string() + ":" + std::to_string(ep.port());
    for (;;) {
      stream.expires_after(limits.idle_timeout);  // slow or idle clients are dropped
      http::request_parser<http::string_body> parser;
      limit(parser);
      boost::system::error_code ec;
      {
        WaitMark mark(sessions, &stream);
        std::tie(ec, std::ignore) = co_await http::async_read(stream, buffer, parser, use_tuple);
      }
      if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::operation_aborted) break;
      HttpRes res;
      bool keep_alive = false;
      bool hr_head = false;
      unsigned version = 11;
      if (ec == http::error::body_limit) {
        res = HttpRes::json_error(413, "request body larger than " + std::to_string(kBodyLimit) + " bytes");
      } else if (ec) {
        res = HttpRes::json_error(400, "bad request: " + ec.message());
      } else {
        auto& req = parser.get();
        keep_alive = req.keep_alive();
        version = req.version();
        hr_head = req.method() == http::verb::head;
        HttpReq hr = to_http_req(req, remote);
        try {
          res = handler(hr);
          if (res.later) {
            auto later = std::move(res.later);
            res = co_await later();
          }
        } catch (const std::exception& ex) {
          spdlog::error("http handler for {} {}: {}", hr.method, hr.target, ex.what());
          res = HttpRes::json_error(500, "internal error");
        }
      }
      if (res.stream) {
        if (!co_await write_streamed(stream, res, version, keep_alive, hr_head)) break;
        if (!keep_alive) break;
        continue;
      }
      http::response<http::string_body> out{static_cast<http::status>(res.status), version};
      out.set(http::field::server, "lastgood");
      out.set(http::field::content_type, res.content_type);
      out.set(http::field::cache_control, "no-store");
      security_headers(out);
      out.keep_alive(keep_alive);
      out.body() = std::move(res.body);
      out.prepare_payload();
      auto [wec, wn] = co_await http::async_write(stream, out, use_tuple);
      (void)wn;
      if (wec || !keep_alive) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  // Writes a streamed response: chunked for HTTP/1.1; for HTTP/1.0 the body ends when the
  // connection closes. The head is written on the loop; the body is made and sent on the worker
  // thread, a piece at a time (one piece held), with non-blocking sends: a scrape of 100 MB then
  // takes the worker's share of the CPU, not a pair of turns of a loop that may be saturated by
  // probes for every piece (issue 21: 1 to 11 s at 50 000 targets). When the client's socket
  // stays full for 20 ms the worker gives up its turn and the loop waits for the socket (30 s at
  // most), so a client that stops reading holds its own session only, never the worker (another
  // scrape goes on). The session waits meanwhile, so nothing else touches the socket. Returns
  // false when the connection is done for.
  asio::awaitable<bool> write_streamed(beast::tcp_stream& stream, HttpRes& res, unsigned version, bool& keep_alive, bool head_only) {
    const bool chunked = version >= 11;
    if (!chunked) keep_alive = false;
    http::response<http::empty_body> out{static_cast<http::status>(res.status), version};
    out.set(http::field::server, "lastgood");
    out.set(http::field::content_type, res.content_type);
    out.set(http::field::cache_control, "no-store");
    security_headers(out);
    out.keep_alive(keep_alive);
    if (chunked) out.chunked(true);
    http::response_serializer<http::empty_body> sr{out};
    stream.expires_after(std::chrono::seconds(30));
    auto [hec, hn] = co_await http::async_write_header(stream, sr, use_tuple);
    (void)hn;
    if (hec) co_return false;
    if (head_only) co_return true;
    stream.expires_never();  // the waits below keep their own deadline
    BodySender body{std::move(res.stream), chunked, stream.socket().native_handle()};
    asio::steady_timer timer(stream.get_executor());
    for (;;) {
      const auto step = co_await asio::co_spawn(
          worker, [this, &body]() -> asio::awaitable<BodySender::Step> { co_return body.run(stopping); }, asio::use_awaitable);
      if (step != BodySender::Step::blocked) co_return step == BodySender::Step::done;
      timer.expires_after(std::chrono::seconds(30));  // a client that takes nothing for 30 s is dropped
      auto woke = co_await (stream.socket().async_wait(tcp::socket::wait_write, use_tuple) || timer.async_wait(use_tuple));
      if (woke.index() != 0 || std::get<0>(std::get<0>(woke)) || stopped) co_return false;
    }
  }

  // A streamed body in progress: the piece being sent and how much of it went.
  struct BodySender {
    std::function<bool(std::string&)> make;
    bool chunked;
    int fd;
    std::string piece = {};
    char size[24] = {};
    iovec iov[3] = {};
    int count = 0;  // parts of iov left to send
    bool more = true, ended = false;
    enum class Step { done, failed, blocked };

    // On the worker: sends until the body is all sent, the connection fails, or the socket stays
    // full for 20 ms.
    Step run(const std::atomic<bool>& stopping) {
      for (;;) {
        while (count > 0 && iov[3 - count].iov_len == 0) --count;
        if (count == 0 && !next()) return Step::done;
        if (count == 0) continue;
        msghdr msg{};
        msg.msg_iov = &iov[3 - count];
        msg.msg_iovlen = static_cast<size_t>(count);
        const ssize_t n = ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
          for (size_t left = static_cast<size_t>(n); left > 0;) {
            iovec& v = iov[3 - count];
            const size_t take = std::min(left, v.iov_len);
            v.iov_base = static_cast<char*>(v.iov_base) + take;
            v.iov_len -= take;
            left -= take;
            if (v.iov_len == 0) --count;
          }
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if ((n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) || stopping.load(std::memory_order_relaxed)) return Step::failed;
        pollfd p{fd, POLLOUT, 0};
        if (::poll(&p, 1, 20) <= 0) return Step::blocked;
      }
    }
    // The next piece (or the last chunk) into iov; false when all was sent.
    bool next() {
      while (more) {
        piece.clear();
        more = make(piece);
        if (piece.empty()) continue;
        const int n = chunked ? std::snprintf(size, sizeof size, "%zx\r\n", piece.size()) : 0;
        iov[0] = {size, static_cast<size_t>(n)};
        iov[1] = {piece.data(), piece.size()};
        iov[2] = {const_cast<char*>("\r\n"), chunked ? 2u : 0u};
        count = 3;
        return true;
      }
      if (!chunked || ended) return false;
      ended = true;
      iov[0] = {const_cast<char*>("0\r\n\r\n"), 5};
      iov[1] = iov[2] = {nullptr, 0};
      count = 3;
      return true;
    }
  };

  // At most about one line a second, however fast the trouble comes.
  void log_limited(const std::string& what) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_log < std::chrono::seconds(1)) {
      ++unlogged;
      return;
    }
    if (unlogged) spdlog::warn("{} ({} more like it in the last second)", what, unlogged);
    else spdlog::warn("{}", what);
    unlogged = 0;
    last_log = now;
  }

  // No descriptor left to accept with: give the reserve back, take the waiting connection and
  // close it (so the listening socket stops being readable and the loop does not spin), then
  // keep a reserve again.
  void shed_one() {
    if (reserve >= 0) {
      ::close(reserve);
      reserve = -1;
    }
    const int fd = ::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) ::close(fd);
    reserve = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }

  asio::awaitable<void> accept_loop() {
    auto pause = std::chrono::milliseconds(10);
    while (!stopped) {
      auto [ec, sock] = co_await acceptor.async_accept(use_tuple);
      if (stopped || ec == asio::error::operation_aborted) break;
      if (ec) {
        const bool out_of_fds = ec == asio::error::no_descriptors || ec.value() == ENFILE || ec.value() == ENOBUFS || ec.value() == ENOMEM;
        if (out_of_fds) shed_one();
        net::count_internal_error("http");
        log_limited("API: cannot accept a connection: " + ec.message() + (out_of_fds ? " (dropped one; backing off " + std::to_string(pause.count()) + " ms)" : ""));
        // Back off, so that lastgood's own shortage does not become a busy loop.
        backoff.expires_after(pause);
        co_await backoff.async_wait(use_tuple);
        pause = std::min(pause * 2, std::chrono::milliseconds(1000));
        continue;
      }
      pause = std::chrono::milliseconds(10);
      if (sessions->open >= limits.max_connections) {
        // Full: the oldest connection still waiting for its request makes room; when every one is
        // busy answering, the new one is closed at once.
        const bool evicted = evict_oldest_waiting();
        log_limited("API: " + std::to_string(sessions->open) + " connections open (max_connections " + std::to_string(limits.max_connections) +
                    (evicted ? "): closed the one that waited longest for a request" : "): all busy, a new one was closed at once"));
        if (!evicted) {
          boost::system::error_code ignored;
          sock.close(ignored);
          continue;
        }
      }
      net::spawn(ioc.get_executor(), [this, s = std::make_shared<tcp::socket>(std::move(sock))]() mutable { return session(std::move(*s)); },
                 "http", life);
    }
  }
};

Server::Server(asio::io_context& ioc, const std::string& listen, Handler handler, ServerLimits limits)
    : impl_(std::make_unique<Impl>(ioc, listen, std::move(handler), limits)) {}
Server::~Server() {
  stop();
  impl_->worker.join();
  if (impl_->reserve >= 0) ::close(impl_->reserve);
}
void Server::start() { net::spawn(impl_->ioc.get_executor(), [this] { return impl_->accept_loop(); }, "http", impl_->life); }
// The accept loop and every session are cancelled: a shutdown does not wait for clients.
void Server::stop() {
  impl_->stopped = true;
  impl_->stopping = true;
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
  impl_->backoff.cancel();
  impl_->life.end();
}
std::size_t Server::connections() const { return impl_->sessions->open; }
std::size_t Server::max_connections() const { return impl_->limits.max_connections; }
tcp::endpoint Server::local_endpoint() const { return impl_->acceptor.local_endpoint(); }

std::optional<HttpReq> parse_http_request(std::string_view bytes, std::string remote, std::string* error) {
  http::request_parser<http::string_body> parser;
  limit(parser);
  parser.eager(true);
  boost::system::error_code ec;
  parser.put(asio::buffer(bytes.data(), bytes.size()), ec);
  if (!ec && !parser.is_done()) ec = http::error::need_more;
  if (ec) {
    if (error) *error = ec.message();
    return std::nullopt;
  }
  return to_http_req(parser.get(), remote);
}

}  // namespace lastgood::watchdog
