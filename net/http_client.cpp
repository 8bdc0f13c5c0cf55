// The coroutine path of HttpConnection and the pieces both paths share (net/http_impl.hpp).
#include "net/http_impl.hpp"

#include <algorithm>
#include <charconv>
#include <ctime>
#include <tuple>
#include <type_traits>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "net/errors.hpp"
#include "net/http_body.hpp"
#include "net/resolve.hpp"

namespace lastgood::net {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = HttpClock;
using Ms = HttpMs;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

std::optional<std::chrono::system_clock::time_point> peer_not_after(SSL* ssl_handle) {
  X509* cert = SSL_get1_peer_certificate(ssl_handle);
  if (!cert) return std::nullopt;
  std::optional<std::chrono::system_clock::time_point> out;
  const ASN1_TIME* na = X509_get0_notAfter(cert);
  std::tm tm{};
  if (na && ASN1_TIME_to_tm(na, &tm) == 1) out = std::chrono::system_clock::from_time_t(timegm(&tm));
  X509_free(cert);
  return out;
}

}  // namespace

void HttpConnection::Impl::close() {
  if (budget) budget->release(*this);
  if (secure && secure->native_handle()) {  // keep its session for the next connection (TLS 1.3 tickets come after the handshake)
    SSL_SESSION* s = SSL_get1_session(secure->native_handle());
    if (s && SSL_SESSION_is_resumable(s)) {
      session.reset(s);
      // Closed without close_notify, OpenSSL would mark the session (the object just kept) not
      // resumable when the stream is freed: say the shutdown is done, the socket closes anyway.
      SSL_set_shutdown(secure->native_handle(), SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    }
    else if (s) SSL_SESSION_free(s);
  }
  boost::system::error_code ec;
  if (plain) plain->close(ec);
  if (secure) secure->next_layer().close(ec);
  plain.reset();
  secure.reset();
}

void HttpConnection::Impl::expired() {
  timed_out = true;
  if (connected()) {
    boost::system::error_code ignored;
    socket().cancel(ignored);
  }
}

asio::awaitable<std::optional<HttpError>> HttpConnection::Impl::connect(Clock::time_point deadline, HttpResponse& resp) {
  close();
  auto t0 = Clock::now();
  if (t0 >= deadline) {  // lastgood was late: the target was never asked
    HttpError err{HttpError::Stage::connect, true, "the probe's own deadline passed before it could connect (lastgood was late)"};
    err.watcher = true;
    co_return err;
  }
  if (budget && !budget->acquire(*this)) {  // every socket probes may hold is in a request now
    HttpError err{HttpError::Stage::connect, false,
                  "lastgood's probes hold all " + std::to_string(budget->capacity()) +
                      " connections its open-files limit allows them, each in a request: its own limit, not the target's"};
    err.watcher = true;
    co_return err;
  }
  boost::system::error_code cec;
  boost::system::error_code aec;
  const auto address = asio::ip::make_address(origin.host, aec);
  if (!aec) {  // an IP address: nothing to resolve (getaddrinfo runs on Asio's resolver thread)
    unsigned short port = 0;
    std::from_chars(origin.port.data(), origin.port.data() + origin.port.size(), port);
    plain = std::make_unique<tcp::socket>(ex);
    arm(deadline);
    // Opened here, not inside the connect: out of descriptors, the open fails with EMFILE, the
    // watcher's own trouble (a range connect reported it as something else).
    const tcp::endpoint ep(address, port);
    plain->open(ep.protocol(), cec);
    if (!cec) std::tie(cec) = co_await plain->async_connect(ep, use_tuple);
  } else {
    Resolved resolved = co_await resolve(ex, origin.host, origin.port, deadline);
    if (resolved.error) co_return HttpError{HttpError::Stage::resolve, resolved.timeout, std::move(*resolved.error)};
    plain = std::make_unique<tcp::socket>(ex);  // held here so that the deadline can cancel it
    arm(deadline);
    cec = asio::error::host_not_found;
    for (const auto& entry : resolved.endpoints) {
      boost::system::error_code ignored;
      plain->close(ignored);
      plain->open(entry.endpoint().protocol(), cec);
      if (cec) {
        if (net::watcher_side(cec)) break;
        continue;
      }
      std::tie(cec) = co_await plain->async_connect(entry.endpoint(), use_tuple);
      if (!cec || timed_out) break;
    }
  }
  if (cec || timed_out) {
    const bool to = timed_out;
    disarm();
    close();
    HttpError err{HttpError::Stage::connect, to, to ? "connect timed out" : "connect: " + cec.message()};
    if (!to && net::watcher_side(cec)) {
      err.watcher = true;
      err.message = "lastgood could not open a connection (" + cec.message() + "): its own limit, not the target's";
    }
    co_return err;
  }
  ++opened;
  boost::system::error_code ignored;
  plain->set_option(tcp::no_delay(true), ignored);
  auto t1 = Clock::now();
  resp.connect_ms = Ms(t1 - t0);
  if (!origin.tls()) {
    plain->non_blocking(true, ignored);  // exchange() writes at once when the socket takes it all
    disarm();
    co_return std::nullopt;
  }
  secure = std::make_unique<TlsSocket>(std::move(*plain), *tls_ctx);
  plain.reset();
  SSL* h = secure->native_handle();
  if (!h) {
    disarm();
    close();
    HttpError err{HttpError::Stage::tls, false, "lastgood could not make a TLS connection object (out of memory): its own trouble, not the target's"};
    err.watcher = true;
    co_return err;
  }
  if (session) SSL_set_session(h, session.get());
  if (is_ip_literal(origin.host)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(h), origin.host.c_str());
  } else {
    SSL_set_tlsext_host_name(h, origin.host.c_str());
    SSL_set1_host(h, origin.host.c_str());
  }
  const auto hec = co_await secure->handshake();
  const bool to = timed_out;
  disarm();
  if (hec || to) {
    std::string why;
    long vr = SSL_get_verify_result(h);
    if (vr != X509_V_OK) why = std::string("certificate verify failed: ") + X509_verify_cert_error_string(vr);
    else why = hec.message();
    close();
    co_return HttpError{HttpError::Stage::tls, to, to ? "TLS handshake timed out" : "TLS handshake: " + why};
  }
  resp.tls_ms = Ms(Clock::now() - t1);
  (SSL_session_reused(h) ? g_tls_handshakes.resumed : g_tls_handshakes.full).fetch_add(1, std::memory_order_relaxed);
  cert_not_after = peer_not_after(h);
  co_return std::nullopt;
}

std::size_t HttpConnection::Impl::grow(std::string& in) {
  const std::size_t used = in.size();
  in.resize(used + std::max<std::size_t>(1024, std::min<std::size_t>(in.capacity() - used, 16384)));
  return used;
}
boost::system::error_code HttpConnection::Impl::settle(std::string& in, std::size_t used, boost::system::error_code ec, std::size_t n) {
  in.resize(used + n);
  if (!ec && n == 0) ec = asio::error::eof;
  return ec;
}
std::size_t HttpConnection::Impl::write_now(tcp::socket& s, const std::string& req, boost::system::error_code& ec) {
  const std::size_t sent = s.write_some(asio::buffer(req), ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) ec = {};
  return sent;
}
HttpError HttpConnection::Impl::write_error(const boost::system::error_code& ec) const {
  return HttpError{HttpError::Stage::write, timed_out, timed_out ? "write: timed out" : "write: " + ec.message()};
}
HttpError HttpConnection::Impl::head_read_error(const boost::system::error_code& ec) const {
  if (timed_out) return HttpError{HttpError::Stage::read_headers, true, "timed out waiting for the response headers"};
  if (ec == asio::error::eof || ec == asio::error::connection_reset || ec == ssl::error::stream_truncated)
    return HttpError{HttpError::Stage::read_headers, false, "connection closed before the response headers were complete"};
  return HttpError{HttpError::Stage::read_headers, false, "read: " + ec.message()};
}
HttpError HttpConnection::Impl::malformed(std::string_view why) {
  return HttpError{HttpError::Stage::protocol, false, "malformed response: " + std::string(why)};
}
HttpError HttpConnection::Impl::body_too_big(std::size_t max_body) {
  return HttpError{HttpError::Stage::body_limit, false, "body larger than " + std::to_string(max_body) + " bytes"};
}
bool HttpConnection::Impl::take_head(const Head& h, Clock::time_point t0, HttpResponse& resp) const {
  if (keep_head) resp.head.assign(h.fields);  // copied now: the body may reuse the buffer
  resp.first_byte_ms = Ms(Clock::now() - t0);
  resp.status = h.status;
  return keeps_alive(h);
}

// Writes the request (from byte x.sent on: the fast path may have written some) and reads the
// response, starting with the bytes already in x.in (those the fast path read before handing
// over). The connection keeps no buffer between requests: x.in is this response's bytes.
template <class Stream>
asio::awaitable<std::optional<HttpError>> HttpConnection::Impl::exchange(Stream& stream, Exchange& x, HttpResponse& resp) {
  const std::string& req = *x.req;
  std::string& in = x.in;
  x.nothing_received = in.empty();
  boost::system::error_code wec;
  if constexpr (std::is_same_v<Stream, tcp::socket>) {
    // Written at once, a request needs no async operation and no completion through the queue.
    if (x.sent == 0) x.sent = write_now(stream, req, wec);
  }
  if constexpr (std::is_same_v<Stream, TlsSocket>) {
    if (x.sent < req.size()) wec = co_await stream.write_all(asio::buffer(req.data() + x.sent, req.size() - x.sent));
  } else {
    if (!wec && x.sent < req.size())
      std::tie(wec, std::ignore) = co_await asio::async_write(stream, asio::buffer(req.data() + x.sent, req.size() - x.sent), use_tuple);
  }
  if (wec || timed_out) co_return write_error(wec);

  if (in.capacity() < 1024) in.reserve(1024);
  std::size_t head_end = 0;  // one past the header block's final CRLF CRLF
  Head h;
  for (;;) {  // the header block; interim 1xx responses are skipped
    std::size_t scan = 0;
    for (;;) {
      auto found = in.find("\r\n\r\n", scan);
      if (found != std::string::npos) {
        head_end = found + 4;
        break;
      }
      if (in.size() > kHeaderLimit) co_return malformed("header fields exceed 64 KiB");
      scan = in.size() < 3 ? 0 : in.size() - 3;
      const std::size_t used = grow(in);
      std::tuple<boost::system::error_code, std::size_t> got;
      if constexpr (std::is_same_v<Stream, TlsSocket>) got = co_await stream.read_some(asio::buffer(in.data() + used, in.size() - used));
      else got = co_await stream.async_read_some(asio::buffer(in.data() + used, in.size() - used), use_tuple);
      auto [rec, rn] = got;
      const auto ec = settle(in, used, rec, rn);
      if (!in.empty()) x.nothing_received = false;
      if (ec || timed_out) co_return head_read_error(ec);
    }
    if (head_end > kHeaderLimit) co_return malformed("header fields exceed 64 KiB");
    h = Head{};
    if (auto bad = parse_head(std::string_view(in).substr(0, head_end), h)) co_return malformed(*bad);
    if (h.status >= 200 || h.status == 101) break;
    in.erase(0, head_end);  // 100 Continue, 103 Early Hints: the real response follows
  }
  x.keep_alive = take_head(h, x.t0, resp);
  if (bodiless(h, x.head)) {
    if (in.size() > head_end) x.keep_alive = false;  // bytes nobody asked for: do not reuse
    co_return std::nullopt;
  }
  auto body_error = [&](const boost::system::error_code& ec) -> HttpError {
    if (timed_out) return HttpError{HttpError::Stage::read_body, true, "timed out reading the body"};
    return HttpError{HttpError::Stage::read_body, false, "reading the body: " + ec.message()};
  };
  using Framing = BodyReader::Framing;
  const Framing framing = h.chunked ? Framing::chunked : h.content_length ? Framing::length : Framing::close;
  BodyReader reader(framing, h.content_length.value_or(0), x.max_body);
  if (framing == Framing::close) x.keep_alive = false;  // delimited by the server closing the connection
  std::size_t pos = head_end;
  bool eof = false;
  for (;;) {
    const auto st = reader.feed(in, pos, eof, resp.body);
    if (st == BodyReader::Status::done) break;
    if (st == BodyReader::Status::too_big) co_return body_too_big(x.max_body);
    if (st == BodyReader::Status::malformed)
      co_return HttpError{HttpError::Stage::protocol, false, std::string("malformed response: ") + reader.error()};
    const std::size_t used = grow(in);
    std::tuple<boost::system::error_code, std::size_t> got;
    if constexpr (std::is_same_v<Stream, TlsSocket>) got = co_await stream.read_some(asio::buffer(in.data() + used, in.size() - used));
    else got = co_await stream.async_read_some(asio::buffer(in.data() + used, in.size() - used), use_tuple);
    auto [rec, rn] = got;
    const auto ec = settle(in, used, rec, rn);
    if (timed_out) co_return body_error(ec);
    if (framing == Framing::close && (ec == asio::error::eof || ec == ssl::error::stream_truncated)) {
      eof = true;
      continue;
    }
    if (ec) co_return body_error(ec);
  }
  if (in.size() > pos) x.keep_alive = false;  // bytes after the body: do not reuse
  co_return std::nullopt;
}

asio::awaitable<HttpResult> HttpConnection::Impl::request(Clock::time_point deadline, Exchange x) {
  if (x.t0 == Clock::time_point{}) x.t0 = Clock::now();
  in_use();
  std::string once;  // the request with Connection: close, for a connection the budget will not keep
  for (int attempt = 0; attempt < 2; ++attempt) {
    HttpResponse resp;
    const bool reused = connected();
    resp.reused_connection = reused;
    if (!reused) {
      if (auto err = co_await connect(deadline, resp)) {
        close();
        co_return *err;
      }
      if (budget && !budget->would_keep(*this) && x.req != &once) {
        once = with_connection_close(*x.req);
        x.req = &once;
      }
    }
    std::optional<HttpError> err;
    arm(deadline);
    if (secure) err = co_await exchange(*secure, x, resp);
    else err = co_await exchange(*plain, x, resp);
    disarm();
    if (err) {
      close();
      const bool before_response = err->stage == HttpError::Stage::write || err->stage == HttpError::Stage::read_headers;
      if (attempt == 0 && before_response && stale(reused, err->timeout, x.nothing_received, deadline)) {
        x.sent = 0;  // a new exchange on a new connection
        x.in.clear();
        continue;
      }
      co_return *err;
    }
    resp.total_ms = Ms(Clock::now() - x.t0);
    resp.cert_not_after = cert_not_after;
    if (!x.keep_alive) close();
    else kept();
    co_return resp;
  }
  co_return HttpError{HttpError::Stage::connect, false, "unreachable"};
}

HttpConnection::HttpConnection(asio::any_io_executor ex, Url origin, std::shared_ptr<ssl::context> tls)
    : impl_(std::make_unique<Impl>(ex)) {
  impl_->origin = std::move(origin);
  impl_->tls_ctx = std::move(tls);
}
HttpConnection::~HttpConnection() { impl_->close(); }

asio::awaitable<HttpResult> HttpConnection::request(HttpRequest req, Clock::time_point deadline, std::size_t max_body) {
  std::string bytes;
  if (auto bad = serialize_request(impl_->origin, req, bytes)) co_return *bad;
  Exchange x;
  x.req = &bytes;
  x.head = req.method == "HEAD";
  x.max_body = max_body;
  co_return co_await impl_->request(deadline, std::move(x));
}
asio::awaitable<HttpResult> HttpConnection::request(const std::string& bytes, bool head, Clock::time_point deadline, std::size_t max_body) {
  Exchange x;
  x.req = &bytes;
  x.head = head;
  x.max_body = max_body;
  return impl_->request(deadline, std::move(x));
}
bool HttpConnection::start(const std::string& bytes, bool head, Clock::time_point deadline, std::size_t max_body, Sink& sink) {
  return impl_->start(bytes, head, deadline, max_body, sink);
}
std::variant<std::string, HttpError> HttpConnection::serialize(const HttpRequest& req) const {
  std::string bytes;
  if (auto bad = serialize_request(impl_->origin, req, bytes)) return *bad;
  return bytes;
}
int HttpConnection::connections_opened() const { return impl_->opened; }
void HttpConnection::keep_headers(bool keep) { impl_->keep_head = keep; }
void HttpConnection::limit_by_budget() {
  impl_->close();  // (nothing is open yet when a probe asks; were it, it would be outside the budget)
  impl_->budget = &ConnectionBudget::of(impl_->ex);
}
const Url& HttpConnection::url() const { return impl_->origin; }
asio::any_io_executor HttpConnection::executor() const { return impl_->ex; }
void HttpConnection::close() { impl_->close(); }

}  // namespace lastgood::net
