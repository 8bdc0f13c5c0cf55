#include "probes/http_client.hpp"

#include "net/errors.hpp"
#include "net/supervise.hpp"

#include "probes/http_body.hpp"
#include "probes/resolve.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstring>
#include <ctime>
#include <re2/re2.h>
#include <tuple>
#include <type_traits>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace lastgood::probes {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Ms = std::chrono::duration<double, std::milli>;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::optional<Url> parse_url(const std::string& url) {
  // RE2: a Location header is network data, matched in time linear in its length.
  static const RE2 re(R"(^(https?)://(\[[0-9a-fA-F:.]+\]|[^/:?#\s]+)(?::(\d{1,5}))?([/?][^\s#]*)?$)");
  re2::StringPiece scheme, host, port, target;
  if (!RE2::FullMatch(url, re, &scheme, &host, &port, &target)) return std::nullopt;
  Url u;
  u.scheme = std::string(scheme);
  u.host = std::string(host);
  if (u.host.size() > 2 && u.host.front() == '[') u.host = u.host.substr(1, u.host.size() - 2);
  u.port = port.data() ? std::string(port) : (u.scheme == "https" ? "443" : "80");
  u.target = target.data() ? std::string(target) : "/";
  if (u.target.front() == '?') u.target = "/" + u.target;
  return u;
}

std::optional<Url> resolve_location(const Url& base, const std::string& location) {
  if (location.rfind("http://", 0) == 0 || location.rfind("https://", 0) == 0) return parse_url(location);
  if (location.rfind("//", 0) == 0) return parse_url(base.scheme + ":" + location);
  Url u = base;
  if (!location.empty() && location.front() == '/') {
    u.target = location;
  } else {
    auto slash = base.target.find_last_of('/', base.target.find('?'));
    u.target = base.target.substr(0, slash == std::string::npos ? 0 : slash + 1) + location;
    if (u.target.empty() || u.target.front() != '/') u.target = "/" + u.target;
  }
  return u;
}

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  std::string_view rest(head);
  while (!rest.empty()) {
    const auto eol = rest.find("\r\n");
    std::string_view line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 2);
    const auto colon = line.find(':');
    if (colon != name.size() || !beast::iequals(line.substr(0, colon), name)) continue;
    std::string_view v = line.substr(colon + 1);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    return std::string(v);
  }
  return std::nullopt;
}

const char* HttpError::stage_name() const {
  switch (stage) {
    case Stage::resolve: return "resolve";
    case Stage::connect: return "connect";
    case Stage::tls: return "tls";
    case Stage::write: return "write";
    case Stage::read_headers: return "read";
    case Stage::read_body: return "read";
    case Stage::body_limit: return "body";
    case Stage::protocol: return "protocol";
  }
  return "?";
}

std::shared_ptr<ssl::context> make_tls_context(const TlsOptions& opts) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                   ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  ctx->set_verify_mode(ssl::verify_peer);
  if (opts.ca_file) ctx->load_verify_file(*opts.ca_file);
  else ctx->set_default_verify_paths();
  if (opts.insecure_skip_verify) {
    // Explicit opt-out from config (logged at start by the caller): accept any chain and name.
    ctx->set_verify_callback([](bool, ssl::verify_context&) { return true; });
  }
  return ctx;
}

std::shared_ptr<ssl::context> default_tls_context() {
  static const std::shared_ptr<ssl::context> ctx = make_tls_context({});
  return ctx;
}

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

// The response reader: a small, strict HTTP/1.1 parser over bytes already read. It never
// allocates per header; it finds the header block, then the body framing.
namespace {

constexpr std::size_t kHeaderLimit = 64 * 1024;

// ASCII case-insensitive comparison (header names and tokens).
bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    unsigned char x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (x != y && (x | 0x20) != (y | 0x20)) return false;
    if (x != y && !((x | 0x20) >= 'a' && (x | 0x20) <= 'z')) return false;
  }
  return true;
}

// Whether a comma-separated header value lists `token` (case-insensitive).
bool lists_token(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    auto comma = value.find(',');
    std::string_view item = value.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (iequal(item, token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

// RFC 9110 token characters, as a table: the header name check runs for every header of every
// response.
constexpr std::array<bool, 256> kTokenChar = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

// Bytes that end a header value's scan: CR (the line's end, when LF follows), and LF and NUL
// (refused anywhere in a value).
constexpr std::array<bool, 256> kValueStop = [] {
  std::array<bool, 256> t{};
  t['\r'] = t['\n'] = t['\0'] = true;
  return t;
}();

struct Head {
  int status = 0;
  int minor = 1;                      // HTTP/1.x
  std::optional<std::uint64_t> content_length;
  bool chunked = false;
  bool close = false, keep_alive = false;  // Connection tokens
  std::string_view fields;            // the header lines, status line excluded
};

// Parses a complete header block (ending in CRLF CRLF). Returns an error text for a malformed one.
std::optional<std::string> parse_head(std::string_view block, Head& h) {
  auto eol = block.find("\r\n");
  std::string_view status_line = block.substr(0, eol);
  if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1." || !std::isdigit(static_cast<unsigned char>(status_line[7])) ||
      status_line[8] != ' ' || !std::isdigit(static_cast<unsigned char>(status_line[9])) ||
      !std::isdigit(static_cast<unsigned char>(status_line[10])) || !std::isdigit(static_cast<unsigned char>(status_line[11])) ||
      (status_line.size() > 12 && status_line[12] != ' '))
    return "bad status line";
  h.minor = status_line[7] - '0';
  h.status = (status_line[9] - '0') * 100 + (status_line[10] - '0') * 10 + (status_line[11] - '0');
  if (h.status < 100) return "bad status code";
  h.fields = block.substr(eol + 2, block.size() - (eol + 2) - 2);  // without the final empty line
  // One pass over the bytes with two tables (token characters; bytes a value may not hold), no
  // searches or views per line: this ran ~2 000 instructions per response (docs/benchmarks.md).
  const char* p = h.fields.data();
  const char* const end = p + h.fields.size();
  while (p < end) {
    const char* const name = p;
    while (p < end && kTokenChar[static_cast<unsigned char>(*p)]) ++p;
    if (p == name || p == end || *p != ':') return "bad header line";
    const std::size_t name_len = static_cast<std::size_t>(p - name);
    const char* v = ++p;
    while (p < end && !kValueStop[static_cast<unsigned char>(*p)]) ++p;
    // The line ends at CR LF (the block's last line at its end); any other CR, LF or NUL is refused.
    if (p < end && (*p != '\r' || p + 1 >= end || p[1] != '\n')) return "bad header value";
    const char* ve = p;
    p += p < end ? 2 : 0;
    // Only three fields matter for framing; their lengths settle most names at once.
    if (name_len != 14 && name_len != 17 && name_len != 10) continue;
    const std::string_view n(name, name_len);
    while (v < ve && (*v == ' ' || *v == '\t')) ++v;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) --ve;
    const std::string_view value(v, static_cast<std::size_t>(ve - v));
    if (name_len == 14 && iequal(n, "content-length")) {
      std::uint64_t len = 0;
      auto [q, ec] = std::from_chars(value.data(), value.data() + value.size(), len);
      if (ec != std::errc() || q != value.data() + value.size() || value.empty()) return "bad Content-Length";
      if (h.content_length && *h.content_length != len) return "conflicting Content-Length";
      h.content_length = len;
    } else if (name_len == 17 && iequal(n, "transfer-encoding")) {
      auto last = value.substr(value.rfind(',') == std::string_view::npos ? 0 : value.rfind(',') + 1);
      while (!last.empty() && last.front() == ' ') last.remove_prefix(1);
      h.chunked = iequal(last, "chunked");
      if (!h.chunked) return "unsupported Transfer-Encoding";
    } else if (name_len == 10 && iequal(n, "connection")) {
      if (value.size() == 10 && iequal(value, "keep-alive")) {  // nearly always the whole value
        h.keep_alive = true;
        continue;
      }
      h.close = h.close || lists_token(value, "close");
      h.keep_alive = h.keep_alive || lists_token(value, "keep-alive");
    }
  }
  if (h.chunked) h.content_length.reset();  // Transfer-Encoding wins (RFC 9112 6.3)
  return std::nullopt;
}

}  // namespace

std::optional<std::string> check_response_head(std::string_view block) {
  Head h;
  return parse_head(block, h);
}

// The deadlines of every request in flight on one io_context, kept by one timer. A timer per
// connection cost, per request, a cancel and a re-arm under the reactor's lock and one more
// handler run for the cancelled wait; at 10 000 probes it was also 10 000 timers held. Here a
// request's deadline is an entry in a min-heap (added and removed in O(log n) of the requests in
// flight); the timer is set for the earliest entry and, when that request ends first, is left to
// fire early and re-arm, so under load it wakes about once per timeout, not once per request. It
// is cancelled when no request is in flight.
// An io_context service: one per io_context, used from the thread that runs it.
class Deadlines final : public asio::execution_context::service {
 public:
  struct Waiter {
    Clock::time_point at{};
    size_t pos = npos;  // index in the heap; npos when not waiting
    virtual void expired() = 0;

   protected:
    ~Waiter() = default;
  };
  static constexpr size_t npos = static_cast<size_t>(-1);
  static inline asio::execution_context::id id;

  explicit Deadlines(asio::io_context& ioc) : asio::execution_context::service(ioc), timer_(ioc) {}
  // HTTP connections run on an io_context (lastgood's loop, or a test's).
  static Deadlines& of(const asio::any_io_executor& ex) {
    auto& ctx = asio::query(ex, asio::execution::context);
    return asio::use_service<Deadlines>(static_cast<asio::io_context&>(ctx));
  }

  void add(Waiter& w, Clock::time_point at) {
    if (w.pos != npos) remove(w);
    w.at = at;
    w.pos = heap_.size();
    heap_.push_back(&w);
    up(w.pos);
    arm();
  }
  void remove(Waiter& w) {
    if (w.pos == npos) return;
    const size_t i = w.pos;
    w.pos = npos;
    Waiter* last = heap_.back();
    heap_.pop_back();
    if (heap_.empty() && armed_ != Clock::time_point::max()) {
      // Nothing waits: a pending timer would be work that keeps io_context::run() from returning.
      armed_ = Clock::time_point::max();
      timer_.cancel();
    }
    if (i == heap_.size()) return;
    heap_[i] = last;
    last->pos = i;
    up(i);
    down(last->pos);
  }
  size_t waiting() const { return heap_.size(); }

 private:
  void shutdown() override {
    for (auto* w : heap_) w->pos = npos;
    heap_.clear();
    timer_.cancel();
  }
  void arm() {
    if (heap_.empty() || heap_[0]->at >= armed_) return;
    armed_ = heap_[0]->at;
    timer_.expires_at(armed_);
    timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) net::guarded("probe", [&] { fire(); });
    });
  }
  void fire() {
    armed_ = Clock::time_point::max();
    const auto now = Clock::now();
    while (!heap_.empty() && heap_[0]->at <= now) {
      Waiter* w = heap_[0];
      remove(*w);
      w->expired();
    }
    arm();
  }
  bool less(size_t a, size_t b) const { return heap_[a]->at < heap_[b]->at; }
  void swap_at(size_t a, size_t b) {
    std::swap(heap_[a], heap_[b]);
    heap_[a]->pos = a;
    heap_[b]->pos = b;
  }
  void up(size_t i) {
    while (i > 0 && less(i, (i - 1) / 2)) {
      swap_at(i, (i - 1) / 2);
      i = (i - 1) / 2;
    }
  }
  void down(size_t i) {
    for (;;) {
      size_t m = i;
      const size_t l = 2 * i + 1, r = l + 1;
      if (l < heap_.size() && less(l, m)) m = l;
      if (r < heap_.size() && less(r, m)) m = r;
      if (m == i) return;
      swap_at(i, m);
      i = m;
    }
  }

  std::vector<Waiter*> heap_;
  asio::steady_timer timer_;
  Clock::time_point armed_ = Clock::time_point::max();
};

// Where the fast path stopped when it hands a request over to the coroutine: the request's
// bytes written so far and the response's bytes read so far, on the same connection.
namespace {
struct Handover {
  std::size_t sent = 0;
  std::string in;
  std::optional<Clock::time_point> t0;
};
}  // namespace

struct HttpConnection::Impl final : Deadlines::Waiter {
  asio::any_io_executor ex;
  Url origin;
  std::shared_ptr<ssl::context> tls_ctx;
  std::unique_ptr<tcp::socket> plain;
  std::unique_ptr<ssl::stream<tcp::socket>> secure;
  std::optional<std::chrono::system_clock::time_point> cert_not_after;
  int opened = 0;
  // The request's deadline waits in the io_context's Deadlines: when it passes, the socket's
  // operations are cancelled and timed_out is set.
  Deadlines& deadlines;
  bool timed_out = false;
  bool keep_head = true;  // keep_headers()

  explicit Impl(asio::any_io_executor e) : ex(e), deadlines(Deadlines::of(ex)) {}
  ~Impl() { deadlines.remove(*this); }

  bool connected() const { return plain || secure; }
  tcp::socket& socket() { return plain ? *plain : secure->next_layer(); }

  void close() {
    boost::system::error_code ec;
    if (plain) plain->close(ec);
    if (secure) secure->next_layer().close(ec);
    plain.reset();
    secure.reset();
  }

  void expired() override {
    timed_out = true;
    if (connected()) {
      boost::system::error_code ignored;
      socket().cancel(ignored);
    }
  }
  void arm(Clock::time_point deadline) {
    timed_out = false;
    deadlines.add(*this, deadline);
  }
  void disarm() { deadlines.remove(*this); }

  asio::awaitable<std::optional<HttpError>> connect(Clock::time_point deadline, HttpResponse& resp) {
    close();
    auto t0 = Clock::now();
    if (t0 >= deadline) {  // lastgood was late: the target was never asked
      HttpError err{HttpError::Stage::connect, true, "the probe's own deadline passed before it could connect (lastgood was late)"};
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
    secure = std::make_unique<ssl::stream<tcp::socket>>(std::move(*plain), *tls_ctx);
    plain.reset();
    SSL* h = secure->native_handle();
    if (is_ip_literal(origin.host)) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(h), origin.host.c_str());
    } else {
      SSL_set_tlsext_host_name(h, origin.host.c_str());
      SSL_set1_host(h, origin.host.c_str());
    }
    auto [hec] = co_await secure->async_handshake(ssl::stream_base::client, use_tuple);
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
    cert_not_after = peer_not_after(h);
    co_return std::nullopt;
  }

  // Room for a read at the end of `in`; returns where it starts. With settle(), the two halves
  // of a read awaited directly in the loop (a nested coroutine would be a frame allocated and
  // resumed on every read).
  static std::size_t grow(std::string& in) {
    const std::size_t used = in.size();
    in.resize(used + std::max<std::size_t>(1024, std::min<std::size_t>(in.capacity() - used, 16384)));
    return used;
  }
  static boost::system::error_code settle(std::string& in, std::size_t used, boost::system::error_code ec, std::size_t n) {
    in.resize(used + n);
    if (!ec && n == 0) ec = asio::error::eof;
    return ec;
  }

  // The pieces of a response's handling that the coroutine path (exchange) and the fast path
  // (start) share.
  static std::size_t write_now(tcp::socket& s, const std::string& req, boost::system::error_code& ec) {
    const std::size_t sent = s.write_some(asio::buffer(req), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) ec = {};
    return sent;
  }
  HttpError write_error(const boost::system::error_code& ec) const {
    return HttpError{HttpError::Stage::write, timed_out, timed_out ? "write: timed out" : "write: " + ec.message()};
  }
  HttpError head_read_error(const boost::system::error_code& ec) const {
    if (timed_out) return HttpError{HttpError::Stage::read_headers, true, "timed out waiting for the response headers"};
    if (ec == asio::error::eof || ec == asio::error::connection_reset || ec == ssl::error::stream_truncated)
      return HttpError{HttpError::Stage::read_headers, false, "connection closed before the response headers were complete"};
    return HttpError{HttpError::Stage::read_headers, false, "read: " + ec.message()};
  }
  static HttpError malformed(std::string_view why) {
    return HttpError{HttpError::Stage::protocol, false, "malformed response: " + std::string(why)};
  }
  static HttpError body_too_big(std::size_t max_body) {
    return HttpError{HttpError::Stage::body_limit, false, "body larger than " + std::to_string(max_body) + " bytes"};
  }
  static bool bodiless(const Head& h, bool head_request) { return head_request || h.status == 204 || h.status == 304 || h.status < 200; }
  // Takes what the head says into resp; returns whether the connection may be kept alive.
  bool take_head(const Head& h, Clock::time_point t0, HttpResponse& resp) const {
    if (keep_head) resp.head.assign(h.fields);  // copied now: the body may reuse the buffer
    resp.first_byte_ms = Ms(Clock::now() - t0);
    resp.status = h.status;
    return h.minor >= 1 ? !h.close : (h.keep_alive && !h.close);
  }

  // Writes the request (from byte `sent` on: the fast path may have written some) and reads the
  // response, starting with the bytes already in `in` (those the fast path read before handing
  // over).
  template <class Stream>
  asio::awaitable<std::optional<HttpError>> exchange(Stream& stream, const std::string& req, bool head_request, std::size_t max_body,
                                                     Clock::time_point t0, HttpResponse& resp, bool& keep_alive, bool& nothing_received,
                                                     std::size_t sent, std::string in) {
    nothing_received = in.empty();
    boost::system::error_code wec;
    if constexpr (std::is_same_v<Stream, tcp::socket>) {
      // A request nearly always fits in the socket's send buffer: written at once, it needs no
      // async operation and no completion through the io_context's queue.
      if (sent == 0) sent = write_now(stream, req, wec);
    }
    if (!wec && sent < req.size()) std::tie(wec, std::ignore) = co_await asio::async_write(stream, asio::buffer(req.data() + sent, req.size() - sent), use_tuple);
    if (wec || timed_out) co_return write_error(wec);

    // this response's bytes (the connection keeps no buffer between requests)
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
        auto [rec, rn] = co_await stream.async_read_some(asio::buffer(in.data() + used, in.size() - used), use_tuple);
        const auto ec = settle(in, used, rec, rn);
        if (!in.empty()) nothing_received = false;
        if (ec || timed_out) co_return head_read_error(ec);
      }
      if (head_end > kHeaderLimit) co_return malformed("header fields exceed 64 KiB");
      h = Head{};
      if (auto bad = parse_head(std::string_view(in).substr(0, head_end), h)) co_return malformed(*bad);
      if (h.status >= 200 || h.status == 101) break;
      in.erase(0, head_end);  // 100 Continue, 103 Early Hints: the real response follows
    }
    keep_alive = take_head(h, t0, resp);
    const bool no_body = bodiless(h, head_request);
    auto too_big = [&] { return body_too_big(max_body); };
    auto body_error = [&](const boost::system::error_code& ec) -> HttpError {
      if (timed_out) return HttpError{HttpError::Stage::read_body, true, "timed out reading the body"};
      return HttpError{HttpError::Stage::read_body, false, "reading the body: " + ec.message()};
    };
    if (no_body) {
      if (in.size() > head_end) keep_alive = false;  // bytes nobody asked for: do not reuse
      co_return std::nullopt;
    }
    using Framing = BodyReader::Framing;
    const Framing framing = h.chunked ? Framing::chunked : h.content_length ? Framing::length : Framing::close;
    BodyReader reader(framing, h.content_length.value_or(0), max_body);
    if (framing == Framing::close) keep_alive = false;  // delimited by the server closing the connection
    std::size_t pos = head_end;
    bool eof = false;
    for (;;) {
      const auto st = reader.feed(in, pos, eof, resp.body);
      if (st == BodyReader::Status::done) break;
      if (st == BodyReader::Status::too_big) co_return too_big();
      if (st == BodyReader::Status::malformed)
        co_return HttpError{HttpError::Stage::protocol, false, std::string("malformed response: ") + reader.error()};
      const std::size_t used = grow(in);
      auto [rec, rn] = co_await stream.async_read_some(asio::buffer(in.data() + used, in.size() - used), use_tuple);
      const auto ec = settle(in, used, rec, rn);
      if (timed_out) co_return body_error(ec);
      if (framing == Framing::close && (ec == asio::error::eof || ec == ssl::error::stream_truncated)) {
        eof = true;
        continue;
      }
      if (ec) co_return body_error(ec);
    }
    if (in.size() > pos) keep_alive = false;  // bytes after the body: do not reuse
    co_return std::nullopt;
  }

  // HTTP/1.1 request bytes. Header names and values, method and target are checked for bytes
  // that would split the request (CR, LF, NUL; spaces in the method or target).
  std::optional<HttpError> serialize_request(const HttpRequest& r, std::string& out) const {
    auto bad = [](std::string_view s, bool spaces_too) {
      for (char c : s)
        if (c == '\r' || c == '\n' || c == '\0' || (spaces_too && (c == ' ' || c == '\t'))) return true;
      return false;
    };
    if (r.method.empty() || bad(r.method, true) || bad(r.target, true))
      return HttpError{HttpError::Stage::protocol, false, "the request method or target holds characters HTTP does not allow"};
    const bool default_port = (origin.tls() && origin.port == "443") || (!origin.tls() && origin.port == "80");
    const bool v6 = origin.host.find(':') != std::string::npos;
    out.reserve(128 + r.target.size() + r.body.size());
    out.append(r.method).append(" ").append(r.target.empty() ? "/" : r.target).append(" HTTP/1.1");
    bool user_agent = false, host = false;
    for (const auto& [k, v] : r.headers) {
      if (k.empty() || bad(k, true) || bad(v, false))
        return HttpError{HttpError::Stage::protocol, false, "header " + k + " holds characters HTTP does not allow"};
      if (beast::iequals(k, "content-length")) continue;
      user_agent = user_agent || beast::iequals(k, "user-agent");
      host = host || beast::iequals(k, "host");  // a configured Host (virtual hosting) replaces the URL's
      out.append("\r\n").append(k).append(": ").append(v);
    }
    if (!host) {
      out.append("\r\nHost: ");
      if (v6) out.append("[").append(origin.host).append("]");
      else out.append(origin.host);
      if (!default_port) out.append(":").append(origin.port);
    }
    if (!user_agent) out.append("\r\nUser-Agent: lastgood");
    if (!r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH")
      out.append("\r\nContent-Length: ").append(std::to_string(r.body.size()));
    out.append("\r\n\r\n").append(r.body);
    return std::nullopt;
  }

  asio::awaitable<HttpResult> request(const std::string& req, bool head, Clock::time_point deadline, std::size_t max_body,
                                      Handover from) {
    const auto t0 = from.t0.value_or(Clock::now());

    for (int attempt = 0; attempt < 2; ++attempt) {
      HttpResponse resp;
      const bool reused = connected();
      resp.reused_connection = reused;
      if (!reused) {
        if (auto err = co_await connect(deadline, resp)) {
          close();
          co_return *err;
        }
      }
      bool keep_alive = false, nothing_received = false;
      std::optional<HttpError> err;
      arm(deadline);
      // (GCC 12: no braced lists or string temporaries in a co_await's arguments)
      if (secure) err = co_await exchange(*secure, req, head, max_body, t0, resp, keep_alive, nothing_received, from.sent, std::move(from.in));
      else err = co_await exchange(*plain, req, head, max_body, t0, resp, keep_alive, nothing_received, from.sent, std::move(from.in));
      from.sent = 0;  // a retry starts a new exchange on a new connection
      from.in.clear();
      disarm();
      if (err) {
        close();
        // A kept-alive connection the server had already closed: try once on a fresh one.
        const bool stale = reused && !err->timeout && nothing_received &&
                           (err->stage == HttpError::Stage::write || err->stage == HttpError::Stage::read_headers);
        if (stale && attempt == 0 && Clock::now() < deadline) continue;
        co_return *err;
      }
      resp.total_ms = Ms(Clock::now() - t0);
      resp.cert_not_after = cert_not_after;
      if (!keep_alive) close();
      co_return resp;
    }
    co_return HttpError{HttpError::Stage::connect, false, "unreachable"};
  }

  // ---- The fast path: a request on a kept-alive plain connection, as callbacks ----
  // A probe's steady state. Through the coroutines a run allocated nine frames (ours, co_spawn's
  // and one per awaited operation; two above the size glibc's per-thread cache serves) and went
  // through Asio's awaitable machinery at each suspension; here a request is one write, one read
  // handler and the parse. Anything out of the ordinary (a partial write, a head or body longer
  // than the first read, 1xx, chunked or close-delimited bodies, a connection found closed) is
  // handed over to request() with the bytes so far: one implementation of those cases.
  struct Fast {
    HttpConnection::Sink* sink = nullptr;
    const std::string* req = nullptr;
    bool head = false;
    std::size_t max_body = 0;
    Clock::time_point t0{}, deadline{};
    std::string in;
  };
  Fast fast;
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);  // the fast path's handlers check it

  bool start(const std::string& req, bool head, Clock::time_point deadline, std::size_t max_body, HttpConnection::Sink& sink) {
    if (!plain) return false;
    fast.sink = &sink;
    fast.req = &req;
    fast.head = head;
    fast.max_body = max_body;
    fast.deadline = deadline;
    fast.t0 = Clock::now();
    boost::system::error_code wec;
    const std::size_t sent = write_now(*plain, req, wec);
    if (wec) {  // nothing written: most likely the server closed the connection; request() reconnects
      close();
      hand_over(0, {});
    } else if (sent < req.size()) {
      hand_over(sent, {});
    } else {
      arm(deadline);
      fast.in.reserve(1024);
      read_more();
    }
    return true;
  }

  void read_more() {
    const std::size_t used = grow(fast.in);
    plain->async_read_some(asio::buffer(fast.in.data() + used, fast.in.size() - used),
                           [this, used, alive = std::weak_ptr<bool>(alive)](boost::system::error_code ec, std::size_t n) {
                             if (!alive.expired()) on_read(settle(fast.in, used, ec, n));
                           });
  }

  void on_read(boost::system::error_code ec) {
    if (ec || timed_out) {
      // Failed before any byte of the response: the kept-alive connection had gone stale.
      // request() tries once on a fresh connection, on the same condition as for its own requests.
      if (fast.in.empty() && !timed_out && Clock::now() < fast.deadline) {
        close();
        hand_over(0, {});
        return;
      }
      return fail(head_read_error(ec));
    }
    const auto found = fast.in.find("\r\n\r\n");
    if (found == std::string::npos) {
      if (fast.in.size() > kHeaderLimit) return fail(malformed("header fields exceed 64 KiB"));
      return read_more();
    }
    const std::size_t head_end = found + 4;
    Head h;
    if (auto bad = parse_head(std::string_view(fast.in).substr(0, head_end), h)) return fail(malformed(*bad));
    const bool no_body = bodiless(h, fast.head);
    const bool complete = no_body || (h.content_length && (*h.content_length > fast.max_body || fast.in.size() >= head_end + *h.content_length));
    if ((h.status < 200 && h.status != 101) || !complete) return hand_over(fast.req->size(), std::move(fast.in));
    if (!no_body && *h.content_length > fast.max_body) return fail(body_too_big(fast.max_body));

    HttpResult result{std::in_place_type<HttpResponse>};
    auto& resp = std::get<HttpResponse>(result);
    resp.reused_connection = true;
    bool keep_alive = take_head(h, fast.t0, resp);
    const std::size_t body = no_body ? 0 : static_cast<std::size_t>(*h.content_length);
    if (fast.in.size() > head_end + body) keep_alive = false;  // bytes nobody asked for: do not reuse
    if (body) resp.body.assign(fast.in, head_end, body);
    disarm();
    resp.total_ms = Ms(Clock::now() - fast.t0);
    if (!keep_alive) close();
    deliver(std::move(result));
  }

  void fail(HttpError err) {
    disarm();
    close();
    deliver(std::move(err));
  }

  void deliver(HttpResult&& r) {
    std::string().swap(fast.in);  // the connection keeps no buffer between requests
    auto* sink = std::exchange(fast.sink, nullptr);
    sink->http_done(std::move(r));
  }

  void hand_over(std::size_t sent, std::string in) {
    disarm();
    asio::co_spawn(ex, request(*fast.req, fast.head, fast.deadline, fast.max_body, Handover{sent, std::move(in), fast.t0}),
                   [this, alive = std::weak_ptr<bool>(alive)](std::exception_ptr ep, HttpResult r) {
                     if (alive.expired()) return;
                     if (ep) {  // lastgood's bug, not the target's: the watcher's error, counted
                       std::string what = "unknown exception";
                       try {
                         std::rethrow_exception(ep);
                       } catch (const std::exception& e) {
                         what = e.what();
                       } catch (...) {
                       }
                       net::note_internal_error("probe", what);
                       r = HttpError{HttpError::Stage::protocol, false, "internal error: " + what, true};
                     }
                     deliver(std::move(r));
                   });
  }
};

HttpConnection::HttpConnection(asio::any_io_executor ex, Url origin, std::shared_ptr<ssl::context> tls)
    : impl_(std::make_unique<Impl>(ex)) {
  impl_->origin = std::move(origin);
  impl_->tls_ctx = std::move(tls);
}
HttpConnection::~HttpConnection() { impl_->close(); }

asio::awaitable<HttpResult> HttpConnection::request(HttpRequest req, Clock::time_point deadline, std::size_t max_body) {
  std::string bytes;
  if (auto bad = impl_->serialize_request(req, bytes)) co_return *bad;
  Handover fresh;
  co_return co_await impl_->request(bytes, req.method == "HEAD", deadline, max_body, std::move(fresh));
}
asio::awaitable<HttpResult> HttpConnection::request(const std::string& bytes, bool head, Clock::time_point deadline, std::size_t max_body) {
  return impl_->request(bytes, head, deadline, max_body, Handover());
}
bool HttpConnection::start(const std::string& bytes, bool head, Clock::time_point deadline, std::size_t max_body, Sink& sink) {
  return impl_->start(bytes, head, deadline, max_body, sink);
}
std::variant<std::string, HttpError> HttpConnection::serialize(const HttpRequest& req) const {
  std::string bytes;
  if (auto bad = impl_->serialize_request(req, bytes)) return *bad;
  return bytes;
}
int HttpConnection::connections_opened() const { return impl_->opened; }
void HttpConnection::keep_headers(bool keep) { impl_->keep_head = keep; }
const Url& HttpConnection::url() const { return impl_->origin; }
asio::any_io_executor HttpConnection::executor() const { return impl_->ex; }
void HttpConnection::close() { impl_->close(); }

}  // namespace lastgood::probes
