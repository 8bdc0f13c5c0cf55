#include "watchdog/ha/etcd.hpp"

#include <charconv>
#include <stdexcept>

#include <openssl/evp.h>

#include "net/http_client.hpp"

namespace lastgood::watchdog::ha {

namespace asio = boost::asio;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string base64(const std::string& raw) {
  std::string out(4 * ((raw.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(raw.data()),
                                static_cast<int>(raw.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::optional<std::string> unbase64(const std::string& text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out(3 * (text.size() / 4), '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  std::size_t len = static_cast<std::size_t>(n);
  // EVP_DecodeBlock counts the padding's bytes as zeros.
  for (std::size_t i = text.size(); i > 0 && text[i - 1] == '='; --i) --len;
  out.resize(len);
  return out;
}

std::string prefix_end(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

std::optional<std::int64_t> int64_value(const json& v) {
  if (v.is_number_integer()) return v.get<std::int64_t>();
  if (!v.is_string()) return std::nullopt;
  const auto& s = v.get_ref<const std::string&>();
  std::int64_t out = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return out;
}

namespace {

// An int64 field of an answer; absent is 0.
std::optional<std::int64_t> int64_at(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return 0;
  return int64_value(*it);
}

EtcdError malformed(const std::string& what) { return EtcdError{"etcd's answer is malformed: " + what, false}; }

std::optional<KeyValue> parse_kv(const json& j) {
  if (!j.is_object()) return std::nullopt;
  KeyValue kv;
  auto key = unbase64(j.value("key", std::string()));
  auto value = unbase64(j.value("value", std::string()));
  auto c = int64_at(j, "create_revision"), m = int64_at(j, "mod_revision"), v = int64_at(j, "version"), l = int64_at(j, "lease");
  if (!key || !value || !c || !m || !v || !l) return std::nullopt;
  kv.key = std::move(*key);
  kv.value = std::move(*value);
  kv.create_revision = *c;
  kv.mod_revision = *m;
  kv.version = *v;
  kv.lease = *l;
  return kv;
}

std::optional<std::vector<KeyValue>> parse_kvs(const json& j) {
  std::vector<KeyValue> out;
  auto it = j.find("kvs");
  if (it == j.end()) return out;
  if (!it->is_array()) return std::nullopt;
  for (const auto& e : *it) {
    auto kv = parse_kv(e);
    if (!kv) return std::nullopt;
    out.push_back(std::move(*kv));
  }
  return out;
}

std::optional<std::int64_t> header_revision(const json& j) {
  auto h = j.find("header");
  if (h == j.end() || !h->is_object()) return std::nullopt;
  return int64_at(*h, "revision");
}

json op_json(const Op& op) {
  json r{{"key", base64(op.key)}};
  if (op.prefix) r["range_end"] = base64(prefix_end(op.key));
  switch (op.kind) {
    case Op::Kind::put:
      r["value"] = base64(op.value);
      if (op.lease) r["lease"] = std::to_string(op.lease);
      return {{"request_put", r}};
    case Op::Kind::del: return {{"request_delete_range", r}};
    case Op::Kind::range: return {{"request_range", r}};
  }
  return {};
}

}  // namespace

json EtcdClient::txn_json(const Txn& t) {
  static const char* targets[] = {"CREATE", "MOD", "VERSION", "LEASE", "VALUE"};
  static const char* results[] = {"EQUAL", "GREATER", "LESS", "NOT_EQUAL"};
  static const char* fields[] = {"create_revision", "mod_revision", "version", "lease", "value"};
  json j{{"compare", json::array()}, {"success", json::array()}, {"failure", json::array()}};
  for (const auto& c : t.compare) {
    const auto ti = static_cast<std::size_t>(c.target);
    json cj{{"key", base64(c.key)}, {"target", targets[ti]}, {"result", results[static_cast<std::size_t>(c.result)]}};
    if (c.target == Compare::Target::value) cj[fields[ti]] = base64(c.value);
    else cj[fields[ti]] = std::to_string(c.number);
    j["compare"].push_back(std::move(cj));
  }
  for (const auto& op : t.success) j["success"].push_back(op_json(op));
  for (const auto& op : t.failure) j["failure"].push_back(op_json(op));
  return j;
}

EtcdResult<TxnResult> EtcdClient::parse_txn(const json& a) {
  TxnResult r;
  auto rev = header_revision(a);
  if (!rev) return malformed("no header.revision");
  r.revision = *rev;
  if (auto s = a.find("succeeded"); s != a.end()) {
    if (!s->is_boolean()) return malformed("\"succeeded\" is not a boolean");
    r.succeeded = s->get<bool>();
  }
  if (auto rs = a.find("responses"); rs != a.end()) {
    if (!rs->is_array()) return malformed("\"responses\" is not an array");
    for (const auto& resp : *rs) {
      if (!resp.is_object()) return malformed("a response is not an object");
      if (auto rr = resp.find("response_range"); rr != resp.end()) {
        auto kvs = parse_kvs(*rr);
        if (!kvs) return malformed("a range's kvs");
        r.ranges.push_back(std::move(*kvs));
      }
    }
  }
  return r;
}

EtcdResult<RangeResult> EtcdClient::parse_range(const json& a) {
  RangeResult r;
  auto rev = header_revision(a);
  if (!rev) return malformed("no header.revision");
  r.revision = *rev;
  auto kvs = parse_kvs(a);
  if (!kvs) return malformed("kvs");
  r.kvs = std::move(*kvs);
  return r;
}

struct EtcdClient::Impl {
  asio::any_io_executor ex;
  EtcdOptions options;
  std::vector<std::unique_ptr<net::HttpConnection>> conns;  // one kept-alive connection per endpoint
  std::vector<std::shared_ptr<bool>> busy;                  // a request in flight on conns[i]
  std::size_t current = 0;                                  // the endpoint tried first
  std::vector<std::string> tokens;                          // with auth: each endpoint's token
};

EtcdClient::EtcdClient(asio::any_io_executor ex, EtcdOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->ex = std::move(ex);
  impl_->options = std::move(options);
  for (const auto& e : impl_->options.endpoints) {
    auto u = net::parse_url(e);  // checked by config/ha.cpp
    if (!u) throw std::invalid_argument("not an etcd endpoint URL: " + e);
    impl_->conns.push_back(std::make_unique<net::HttpConnection>(impl_->ex, *u, u->tls() ? impl_->options.tls : nullptr));
    impl_->busy.push_back(std::make_shared<bool>(false));
  }
  if (impl_->conns.empty()) throw std::invalid_argument("no etcd endpoint");
}

EtcdClient::~EtcdClient() = default;

asio::any_io_executor EtcdClient::executor() const { return impl_->ex; }

const std::string& EtcdClient::endpoint() const { return impl_->options.endpoints[impl_->current]; }

std::string EtcdClient::token() const { return impl_->tokens.empty() ? std::string() : impl_->tokens[impl_->current]; }

asio::awaitable<std::optional<EtcdError>> EtcdClient::authenticate(std::size_t i, Clock::time_point deadline) {
  const std::string& ep = impl_->options.endpoints[i];
  const auto password = impl_->options.password ? impl_->options.password() : std::nullopt;
  if (!password) co_return EtcdError{"the etcd password (ha.auth) could not be read", false};
  net::HttpRequest req;
  req.method = "POST";
  req.target = "/v3/auth/authenticate";
  req.headers.emplace_back("Content-Type", "application/json");
  req.body = json{{"name", impl_->options.user}, {"password", *password}}.dump();
  // A connection of its own: the call's connection may be busy, and this is rare.
  net::HttpConnection conn(impl_->ex, impl_->conns[i]->url(), impl_->options.tls);
  const net::HttpResult res = co_await conn.request(std::move(req), deadline, 64 * 1024);
  if (const auto* err = std::get_if<net::HttpError>(&res)) co_return EtcdError{ep + ": authenticating: " + err->message, true};
  const auto& r = std::get<net::HttpResponse>(res);
  if (r.status >= 500) co_return EtcdError{ep + ": authenticating: HTTP " + std::to_string(r.status), true};
  const json answer = json::parse(r.body, nullptr, false);
  if (r.status != 200 || !answer.is_object() || !answer.contains("token") || !answer["token"].is_string() || answer["token"].get_ref<const std::string&>().empty()) {
    std::string why = answer.is_object() ? answer.value("message", std::string()) : std::string();
    // etcd's message names neither the password nor the token.
    co_return EtcdError{ep + ": etcd refused the user name or password of ha.auth (user " + impl_->options.user + ")" +
                            (why.empty() ? "" : ": " + why.substr(0, 200)),
                        false};
  }
  impl_->tokens[i] = answer["token"].get<std::string>().substr(0, 4096);
  co_return std::nullopt;
}

asio::awaitable<EtcdResult<json>> EtcdClient::call(const char* path, json body) {
  auto r = co_await call_endpoints(path, std::move(body));
  if (impl_->options.on_request) {
    const std::string_view p(path);
    const auto op = std::string(p.substr(p.rfind('/') + 1));  // grant, keepalive, revoke, range, txn
    const auto* e = std::get_if<EtcdError>(&r);
    impl_->options.on_request(op, !e ? "ok" : e->unavailable ? "unavailable" : "refused");
  }
  co_return r;
}

asio::awaitable<EtcdResult<json>> EtcdClient::call_endpoints(const char* path, json body) {
  const auto deadline = Clock::now() + impl_->options.call_timeout;
  const std::string payload = body.dump();
  std::string last = "no endpoint was tried";
  // Each endpoint once, starting with the one that answered last; an endpoint that does not
  // answer gets a fair share of what is left of the deadline.
  const std::size_t n = impl_->conns.size();
  const bool auth = !impl_->options.user.empty();
  if (auth && impl_->tokens.size() != n) impl_->tokens.assign(n, std::string());
  bool reauthenticated = false;
  for (std::size_t tried = 0; tried < n && Clock::now() < deadline; ++tried) {
    const std::size_t i = (impl_->current + tried) % n;
    const auto share = (deadline - Clock::now()) / static_cast<long>(n - tried);
    if (auth && impl_->tokens[i].empty()) {
      const auto refused = co_await authenticate(i, Clock::now() + share);
      if (refused && !refused->unavailable) co_return *refused;  // wrong credentials: not a member's trouble
      if (refused) {
        last = refused->message;
        continue;
      }
    }
    net::HttpRequest req;
    req.method = "POST";
    req.target = path;
    req.headers.emplace_back("Content-Type", "application/json");
    if (auth) req.headers.emplace_back("Authorization", impl_->tokens[i]);
    req.body = payload;
    // One request at a time per connection: a call made while another is in flight (a resign
    // during a campaign round) gets a connection of its own for this request.
    std::unique_ptr<net::HttpConnection> own;
    net::HttpConnection* conn = impl_->conns[i].get();
    // The flag is shared with this frame, which may be destroyed after the client (an io_context
    // torn down with the call still pending).
    struct Hold {
      std::shared_ptr<bool> flag;
      ~Hold() {
        if (flag) *flag = false;
      }
    } hold;
    if (*impl_->busy[i]) {
      own = std::make_unique<net::HttpConnection>(impl_->ex, conn->url(), impl_->options.tls);
      conn = own.get();
    } else {
      hold.flag = impl_->busy[i];
      *hold.flag = true;
    }
    const net::HttpResult res = co_await conn->request(std::move(req), Clock::now() + share, 4 * 1024 * 1024);
    const std::string& ep = impl_->options.endpoints[i];
    if (const auto* err = std::get_if<net::HttpError>(&res)) {
      last = ep + ": " + err->message;
      conn->close();
      continue;
    }
    const auto& r = std::get<net::HttpResponse>(res);
    if (r.status >= 500) {  // no leader, no quorum: another member may do better
      last = ep + ": HTTP " + std::to_string(r.status);
      continue;
    }
    json answer = json::parse(r.body, nullptr, false);
    if (auth && r.status == 401 && !reauthenticated) {
      // The token expired (etcd's --auth-token-ttl) or the member restarted: asked for again, and
      // this endpoint tried once more.
      impl_->tokens[i].clear();
      reauthenticated = true;
      --tried;
      continue;
    }
    if (r.status != 200) {
      std::string why = answer.is_object() ? answer.value("message", answer.value("error", std::string())) : std::string();
      co_return EtcdError{ep + ": HTTP " + std::to_string(r.status) + (why.empty() ? "" : ": " + why.substr(0, 300)), false};
    }
    if (answer.is_discarded() || !answer.is_object()) co_return malformed("not a JSON object");
    impl_->current = i;
    co_return answer;
  }
  co_return EtcdError{"etcd unavailable: " + last, true};
}

asio::awaitable<EtcdResult<LeaseGrant>> EtcdClient::grant(std::chrono::seconds ttl) {
  json body{{"TTL", ttl.count()}};  // made before co_await: GCC 12 cannot keep an initializer list's array across it
  auto a = co_await call("/v3/lease/grant", std::move(body));
  if (auto* e = std::get_if<EtcdError>(&a)) co_return *e;
  const json& j = std::get<json>(a);
  if (auto err = j.find("error"); err != j.end() && err->is_string() && !err->get_ref<const std::string&>().empty())
    co_return EtcdError{"lease grant refused: " + err->get<std::string>().substr(0, 300), false};
  auto id = int64_at(j, "ID"), t = int64_at(j, "TTL");
  if (!id || !t || *id == 0) co_return malformed("no lease ID");
  co_return LeaseGrant{*id, *t};
}

asio::awaitable<EtcdResult<std::optional<std::int64_t>>> EtcdClient::keepalive(std::int64_t lease) {
  json body{{"ID", std::to_string(lease)}};
  auto a = co_await call("/v3/lease/keepalive", std::move(body));
  if (auto* e = std::get_if<EtcdError>(&a)) co_return *e;
  const json& j = std::get<json>(a);
  // A stream method: the gateway wraps each message in {"result": ...}.
  const json& r = j.contains("result") ? j["result"] : j;
  if (!r.is_object()) co_return malformed("keepalive result");
  auto t = int64_at(r, "TTL");
  if (!t) co_return malformed("keepalive TTL");
  if (*t <= 0) co_return std::optional<std::int64_t>{};  // the lease is gone
  co_return std::optional<std::int64_t>{*t};
}

asio::awaitable<EtcdResult<bool>> EtcdClient::revoke(std::int64_t lease) {
  json body{{"ID", std::to_string(lease)}};
  auto a = co_await call("/v3/lease/revoke", std::move(body));
  if (auto* e = std::get_if<EtcdError>(&a)) {
    // Revoking a lease etcd no longer has: what the caller wanted.
    if (!e->unavailable && e->message.find("lease not found") != std::string::npos) co_return true;
    co_return *e;
  }
  co_return true;
}

asio::awaitable<EtcdResult<RangeResult>> EtcdClient::range(const std::string& key, bool prefix) {
  json body{{"key", base64(key)}};
  if (prefix) body["range_end"] = base64(prefix_end(key));
  auto a = co_await call("/v3/kv/range", std::move(body));
  if (auto* e = std::get_if<EtcdError>(&a)) co_return *e;
  co_return parse_range(std::get<json>(a));
}

asio::awaitable<EtcdResult<TxnResult>> EtcdClient::txn(const Txn& t) {
  json body = txn_json(t);
  auto a = co_await call("/v3/kv/txn", std::move(body));
  if (auto* e = std::get_if<EtcdError>(&a)) co_return *e;
  co_return parse_txn(std::get<json>(a));
}

}  // namespace lastgood::watchdog::ha
