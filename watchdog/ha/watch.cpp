#include "watchdog/ha/watch.hpp"

#include <charconv>
#include <optional>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include "net/resolve.hpp"
#include "net/url.hpp"

namespace lastgood::watchdog::ha {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kMaxPending = 4 * 1024 * 1024;  // one message larger than this is not etcd's
}  // namespace

struct EtcdWatch::Impl {
  explicit Impl(asio::any_io_executor ex) : stream(ex) {}
  std::string endpoint;
  std::string token;  // etcd auth: sent as Authorization
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  std::unique_ptr<http::response_parser<http::buffer_body>> parser;
  std::string pending;  // bytes of the body not yet split into lines
  bool open = false;
};

EtcdWatch::EtcdWatch(asio::any_io_executor ex, std::string endpoint, std::string token) : impl_(std::make_unique<Impl>(std::move(ex))) {
  impl_->endpoint = std::move(endpoint);
  impl_->token = std::move(token);
}

EtcdWatch::~EtcdWatch() { close(); }

void EtcdWatch::close() {
  impl_->open = false;
  boost::system::error_code ignored;
  impl_->stream.socket().close(ignored);
}

namespace {
EtcdError lie(const std::string& what) { return EtcdError{"etcd's watch message is malformed: " + what, false}; }
}  // namespace

EtcdResult<WatchBatch> EtcdWatch::parse_message(const json& m) {
  const json& r = m.is_object() && m.contains("result") ? m["result"] : m;
  if (!r.is_object()) return lie("no result object");
  WatchBatch b;
  if (auto h = r.find("header"); h != r.end()) {
    if (!h->is_object()) return lie("header");
    if (auto rev = h->find("revision"); rev != h->end()) {
      auto v = int64_value(*rev);
      if (!v) return lie("header.revision");
      b.revision = *v;
    }
  }
  if (auto c = r.find("canceled"); c != r.end()) {
    if (!c->is_boolean()) return lie("canceled");
    b.canceled = c->get<bool>();
  }
  if (auto c = r.find("compact_revision"); c != r.end()) {
    auto v = int64_value(*c);
    if (!v) return lie("compact_revision");
    b.compact_revision = *v;
  }
  if (auto c = r.find("cancel_reason"); c != r.end() && c->is_string()) b.cancel_reason = c->get<std::string>().substr(0, 300);
  if (auto evs = r.find("events"); evs != r.end()) {
    if (!evs->is_array()) return lie("events is not an array");
    for (const auto& e : *evs) {
      if (!e.is_object() || !e.contains("kv")) return lie("an event without kv");
      // The JSON form of a KeyValue is a range's: reuse its parser through a one-element range.
      json one{{"header", {{"revision", "0"}}}, {"kvs", json::array({e["kv"]})}};
      auto parsed = EtcdClient::parse_range(one);
      if (auto* err = std::get_if<EtcdError>(&parsed)) return *err;
      WatchEvent ev;
      if (auto t = e.find("type"); t != e.end()) {
        if (!t->is_string()) return lie("an event's type");
        ev.type = t->get<std::string>() == "DELETE" ? WatchEvent::Type::del : WatchEvent::Type::put;
      }
      ev.kv = std::move(std::get<RangeResult>(parsed).kvs.at(0));
      b.events.push_back(std::move(ev));
    }
  }
  return b;
}

asio::awaitable<EtcdResult<json>> EtcdWatch::next_message(Clock::time_point deadline) {
  auto& im = *impl_;
  for (;;) {
    if (auto nl = im.pending.find('\n'); nl != std::string::npos) {
      std::string line = im.pending.substr(0, nl);
      im.pending.erase(0, nl + 1);
      if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
      json m = json::parse(line, nullptr, false);
      if (m.is_discarded()) co_return EtcdError{"etcd's watch stream is not JSON lines", false};
      if (m.contains("error")) co_return EtcdError{"watch: " + m["error"].dump().substr(0, 300), false};
      co_return m;
    }
    if (!im.open || im.parser->is_done()) co_return EtcdError{"the watch stream ended", true};
    if (im.pending.size() > kMaxPending) {
      close();
      co_return EtcdError{"etcd's watch stream sent a line over 4 MiB", false};
    }
    char chunk[16384];
    im.parser->get().body().data = chunk;
    im.parser->get().body().size = sizeof chunk;
    im.stream.expires_at(deadline);
    auto [ec, n] = co_await http::async_read_some(im.stream, im.buffer, *im.parser, use_tuple);
    (void)n;
    const std::size_t got = sizeof chunk - im.parser->get().body().size;
    im.pending.append(chunk, got);
    if (ec == http::error::need_buffer) continue;
    if (ec) {
      close();
      co_return EtcdError{"watch stream: " + ec.message(), true};
    }
  }
}

asio::awaitable<EtcdResult<bool>> EtcdWatch::start(std::string key, bool prefix, std::int64_t start_revision, Clock::time_point deadline) {
  auto& im = *impl_;
  const auto url = net::parse_url(im.endpoint);
  if (!url || url->tls()) co_return EtcdError{"watch: only plain http:// endpoints: " + im.endpoint, false};
  auto resolved = co_await net::resolve(im.stream.get_executor(), url->host, url->port, deadline);
  if (resolved.error || resolved.endpoints.empty()) {
    const std::string why = resolved.error ? *resolved.error : "no address for " + url->host;
    co_return EtcdError{"watch: " + why, true};
  }
  im.stream.expires_at(deadline);
  auto [cec, ep] = co_await im.stream.async_connect(resolved.endpoints, use_tuple);
  (void)ep;
  if (cec) co_return EtcdError{"watch: connecting to " + im.endpoint + ": " + cec.message(), true};
  json create{{"key", base64(key)}};
  if (prefix) create["range_end"] = base64(prefix_end(key));
  if (start_revision > 0) create["start_revision"] = std::to_string(start_revision);
  http::request<http::string_body> req{http::verb::post, "/v3/watch", 11};
  req.set(http::field::host, url->host + ":" + url->port);
  req.set(http::field::content_type, "application/json");
  if (!impl_->token.empty()) req.set(http::field::authorization, impl_->token);
  req.body() = json{{"create_request", create}}.dump();
  req.prepare_payload();
  auto [wec, wn] = co_await http::async_write(im.stream, req, use_tuple);
  (void)wn;
  if (wec) co_return EtcdError{"watch: sending the request: " + wec.message(), true};
  im.parser = std::make_unique<http::response_parser<http::buffer_body>>();
  im.parser->body_limit(boost::none);  // a stream: bounded per line instead (kMaxPending)
  auto [hec, hn] = co_await http::async_read_header(im.stream, im.buffer, *im.parser, use_tuple);
  (void)hn;
  if (hec) co_return EtcdError{"watch: reading the answer: " + hec.message(), true};
  if (im.parser->get().result_int() != 200) co_return EtcdError{"watch: HTTP " + std::to_string(im.parser->get().result_int()), false};
  im.open = true;
  auto first = co_await next_message(deadline);
  if (auto* e = std::get_if<EtcdError>(&first)) co_return *e;
  const json& m = std::get<json>(first);
  const json& r = m.is_object() && m.contains("result") ? m["result"] : m;
  const auto created = r.is_object() ? r.find("created") : r.end();
  if (created == r.end() || !created->is_boolean() || !created->get<bool>()) co_return EtcdError{"watch: etcd did not confirm the watch", false};
  co_return true;
}

asio::awaitable<EtcdResult<WatchBatch>> EtcdWatch::next(Clock::time_point deadline) {
  for (;;) {
    auto m = co_await next_message(deadline);
    if (auto* e = std::get_if<EtcdError>(&m)) co_return *e;
    auto b = parse_message(std::get<json>(m));
    if (auto* bb = std::get_if<WatchBatch>(&b); bb && bb->events.empty() && !bb->canceled) continue;  // progress notices
    co_return b;
  }
}

}  // namespace lastgood::watchdog::ha
