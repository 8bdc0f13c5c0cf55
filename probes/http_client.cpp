#include "probes/http_client.hpp"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <regex>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace lastgood::probes {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Ms = std::chrono::duration<double, std::milli>;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::optional<Url> parse_url(const std::string& url) {
  static const std::regex re(R"(^(https?)://(\[[0-9a-fA-F:.]+\]|[^/:?#\s]+)(?::(\d{1,5}))?([/?][^\s#]*)?$)");
  std::smatch m;
  if (!std::regex_match(url, m, re)) return std::nullopt;
  Url u;
  u.scheme = m[1];
  u.host = m[2];
  if (u.host.size() > 2 && u.host.front() == '[') u.host = u.host.substr(1, u.host.size() - 2);
  u.port = m[3].matched ? std::string(m[3]) : (u.scheme == "https" ? "443" : "80");
  u.target = m[4].matched ? std::string(m[4]) : "/";
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
  for (const auto& [k, v] : headers) {
    if (k.size() == name.size() &&
        std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) { return std::tolower(a) == std::tolower(b); }))
      return v;
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

struct HttpConnection::Impl {
  asio::any_io_executor ex;
  Url origin;
  std::shared_ptr<ssl::context> tls_ctx;
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;
  std::optional<std::chrono::system_clock::time_point> cert_not_after;
  int opened = 0;

  bool connected() const { return plain || secure; }
  beast::tcp_stream& lowest() { return plain ? *plain : beast::get_lowest_layer(*secure); }

  void close() {
    boost::system::error_code ec;
    if (plain) plain->socket().close(ec);
    if (secure) beast::get_lowest_layer(*secure).socket().close(ec);
    plain.reset();
    secure.reset();
    buffer.clear();
  }

  asio::awaitable<std::optional<HttpError>> connect(Clock::time_point deadline, HttpResponse& resp) {
    close();
    auto resolver = std::make_shared<tcp::resolver>(ex);
    asio::steady_timer timer(ex);
    timer.expires_at(deadline);
    timer.async_wait([resolver](boost::system::error_code ec) {
      if (!ec) resolver->cancel();
    });
    auto t0 = Clock::now();
    auto [rec, endpoints] = co_await resolver->async_resolve(origin.host, origin.port, use_tuple);
    timer.cancel();
    if (rec) {
      bool to = rec == asio::error::operation_aborted;
      co_return HttpError{HttpError::Stage::resolve, to, to ? "resolving " + origin.host + " timed out" : "resolving " + origin.host + ": " + rec.message()};
    }
    auto tcp_s = std::make_unique<beast::tcp_stream>(ex);
    tcp_s->expires_at(deadline);
    auto [cec, ep] = co_await tcp_s->async_connect(endpoints, use_tuple);
    if (cec) {
      bool to = cec == beast::error::timeout;
      co_return HttpError{HttpError::Stage::connect, to, to ? "connect timed out" : "connect: " + cec.message()};
    }
    ++opened;
    tcp_s->socket().set_option(tcp::no_delay(true));
    auto t1 = Clock::now();
    resp.connect_ms = Ms(t1 - t0);
    if (!origin.tls()) {
      plain = std::move(tcp_s);
      co_return std::nullopt;
    }
    auto s = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(std::move(*tcp_s), *tls_ctx);
    SSL* h = s->native_handle();
    if (is_ip_literal(origin.host)) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(h), origin.host.c_str());
    } else {
      SSL_set_tlsext_host_name(h, origin.host.c_str());
      SSL_set1_host(h, origin.host.c_str());
    }
    beast::get_lowest_layer(*s).expires_at(deadline);
    auto [hec] = co_await s->async_handshake(ssl::stream_base::client, use_tuple);
    if (hec) {
      bool to = hec == beast::error::timeout;
      std::string why;
      long vr = SSL_get_verify_result(h);
      if (vr != X509_V_OK) why = std::string("certificate verify failed: ") + X509_verify_cert_error_string(vr);
      else why = hec.message();
      co_return HttpError{HttpError::Stage::tls, to, to ? "TLS handshake timed out" : "TLS handshake: " + why};
    }
    resp.tls_ms = Ms(Clock::now() - t1);
    cert_not_after = peer_not_after(h);
    secure = std::move(s);
    co_return std::nullopt;
  }

  template <class Stream>
  asio::awaitable<std::optional<HttpError>> exchange(Stream& stream, const std::string& req, bool head, Clock::time_point deadline,
                                                     std::size_t max_body, Clock::time_point t0, HttpResponse& resp, bool& keep_alive,
                                                     bool& nothing_received) {
    lowest().expires_at(deadline);
    // The request is serialised once into one buffer: one write, no serializer state machine
    // (Beast's serializer was a third of the instructions of a keep-alive probe; see bench/).
    auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(req), use_tuple);
    (void)wn;
    if (wec) {
      co_return HttpError{HttpError::Stage::write, wec == beast::error::timeout, "write: " + wec.message()};
    }
    http::response_parser<http::string_body> parser;
    parser.header_limit(64 * 1024);
    parser.body_limit(max_body);
    if (head) parser.skip(true);
    auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, use_tuple);
    (void)hn;
    if (hec) {
      nothing_received = parser.got_some() == false;
      if (hec == http::error::body_limit)  // a Content-Length above the cap is refused at the header
        co_return HttpError{HttpError::Stage::body_limit, false, "body larger than " + std::to_string(max_body) + " bytes"};
      if (hec == beast::error::timeout)
        co_return HttpError{HttpError::Stage::read_headers, true, "timed out waiting for the response headers"};
      if (hec == http::error::end_of_stream || hec == asio::error::eof || hec == http::error::partial_message ||
          hec == asio::error::connection_reset || hec == ssl::error::stream_truncated)
        co_return HttpError{HttpError::Stage::read_headers, false, "connection closed before the response headers were complete"};
      if (hec.category() == boost::system::error_code(http::error::bad_version).category() || hec == http::error::header_limit)
        co_return HttpError{HttpError::Stage::protocol, false, "malformed response: " + hec.message()};
      co_return HttpError{HttpError::Stage::read_headers, false, "read: " + hec.message()};
    }
    resp.first_byte_ms = Ms(Clock::now() - t0);
    if (!parser.is_done()) {
      auto [bec, bn] = co_await http::async_read(stream, buffer, parser, use_tuple);
      (void)bn;
      if (bec == http::error::body_limit)
        co_return HttpError{HttpError::Stage::body_limit, false, "body larger than " + std::to_string(max_body) + " bytes"};
      if (bec == beast::error::timeout)
        co_return HttpError{HttpError::Stage::read_body, true, "timed out reading the body"};
      if (bec && !(bec == http::error::end_of_stream && parser.is_done()))
        co_return HttpError{HttpError::Stage::read_body, false, "reading the body: " + bec.message()};
    }
    auto& res = parser.get();
    resp.status = static_cast<int>(res.result_int());
    for (const auto& f : res) resp.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    resp.body = std::move(res.body());
    keep_alive = res.keep_alive();
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

  asio::awaitable<HttpResult> request(HttpRequest r, Clock::time_point deadline, std::size_t max_body) {
    const auto t0 = Clock::now();
    std::string req;
    if (auto bad = serialize_request(r, req)) co_return *bad;
    const bool head = r.method == "HEAD";

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
      if (secure) err = co_await exchange(*secure, req, head, deadline, max_body, t0, resp, keep_alive, nothing_received);
      else err = co_await exchange(*plain, req, head, deadline, max_body, t0, resp, keep_alive, nothing_received);
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
};

HttpConnection::HttpConnection(asio::any_io_executor ex, Url origin, std::shared_ptr<ssl::context> tls)
    : impl_(std::make_unique<Impl>()) {
  impl_->ex = std::move(ex);
  impl_->origin = std::move(origin);
  impl_->tls_ctx = std::move(tls);
}
HttpConnection::~HttpConnection() { impl_->close(); }

asio::awaitable<HttpResult> HttpConnection::request(HttpRequest req, Clock::time_point deadline, std::size_t max_body) {
  return impl_->request(std::move(req), deadline, max_body);
}
int HttpConnection::connections_opened() const { return impl_->opened; }
void HttpConnection::close() { impl_->close(); }

}  // namespace lastgood::probes
