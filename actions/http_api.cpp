#include "actions/http_api.hpp"

#include "config/reader.hpp"
#include "net/http_client.hpp"

namespace lastgood::actions {

namespace asio = boost::asio;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

json expand_json(const json& j, const Plan& p) {
  if (j.is_string()) return expand(j.get<std::string>(), p);
  if (j.is_object()) {
    json out = json::object();
    for (auto& [k, v] : j.items()) out[k] = expand_json(v, p);
    return out;
  }
  if (j.is_array()) {
    json out = json::array();
    for (const auto& v : j) out.push_back(expand_json(v, p));
    return out;
  }
  return j;
}

std::string snippet(const std::string& s) { return cap_output(s, 300); }

class HttpApi final : public Action {
 public:
  HttpApi(asio::any_io_executor ex, std::string service, const config::Deployment& d)
      : ex_(std::move(ex)), service_(std::move(service)), spec_(config::spec_as<HttpApiSpec>(d.spec)) {
    if (spec_.rollback.token && spec_.rollback.token->resolved()) token_ = spec_.rollback.token->value();
    if (spec_.timeout) timeout_ = *spec_.timeout;
  }
  const char* kind() const override { return "http_api"; }

  asio::awaitable<Observation> observe() override {
    Observation o;
    if (!spec_.observe) {
      o.error = "no observe URL configured";
      co_return o;
    }
    Plan p{"", "", {service_, "", ""}, {}};
    auto res = co_await call("GET", expand(spec_.observe->url, p, true), {}, "");
    if (auto* err = std::get_if<net::HttpError>(&res)) {
      o.error = "observe: " + err->message;
      co_return o;
    }
    auto& r = std::get<net::HttpResponse>(res);
    if (r.status < 200 || r.status > 299) {
      o.error = "observe: HTTP " + std::to_string(r.status) + (r.status == 401 || r.status == 403 ? " (check the token)" : "");
      co_return o;
    }
    auto doc = json::parse(r.body, nullptr, false);
    const json::json_pointer ptr(spec_.observe->json_pointer);
    if (doc.is_discarded() || !doc.contains(ptr)) {
      o.error = "observe: no " + ptr.to_string() + " in the answer";
      co_return o;
    }
    const json& v = doc.at(ptr);
    o.live = ObservedRelease{v.is_string() ? v.get<std::string>() : v.dump(), std::nullopt, false};
    co_return o;
  }

  Plan plan(const std::string& from, const std::string& to, const Context& ctx) const override {
    Plan p{from, to, ctx, {}};
    if (spec_.observe) p.steps.push_back("GET " + expand(spec_.observe->url, p, true) + ": the live release must still be " + from);
    const auto& rb = spec_.rollback;
    std::string line = rb.method + " " + expand(rb.url, p, true);
    if (rb.body) line += " " + expand_json(*rb.body, p).dump();
    p.steps.push_back(line + (token_.empty() ? "" : " (with the bearer token)"));
    return p;
  }

  asio::awaitable<Outcome> execute(const Plan& p) override {
    Outcome out;
    if (spec_.observe) {  // the live release, read just before the call, must still be plan.from
      const Observation now = co_await observe();
      if (!now.live) {
        out.error = "reading the live release before the switch failed: " + now.error + "; nothing was changed";
        co_return out;
      }
      if (now.live->id != p.from) co_return refused_not_from(p, now.live->id);
    }
    const auto& rb = spec_.rollback;
    std::vector<std::pair<std::string, std::string>> headers;
    for (const auto& [k, v] : rb.headers) headers.emplace_back(k, expand(v, p));
    // A target that keeps the highest token answers 409 to a lower one (ha.md); the key lets it
    // drop a repeated request of the same action.
    if (!p.action_id.empty()) headers.emplace_back("Idempotency-Key", p.action_id);
    if (p.fence != 0) headers.emplace_back("X-Lastgood-Fence", std::to_string(p.fence));
    std::string body;
    if (rb.body) {
      body = expand_json(*rb.body, p).dump();
      headers.emplace_back("Content-Type", "application/json");
    }
    auto res = co_await call(rb.method, expand(rb.url, p, true), headers, body);
    if (auto* err = std::get_if<net::HttpError>(&res)) {
      out.error = err->message;
      co_return out;
    }
    auto& r = std::get<net::HttpResponse>(res);
    out.output = "HTTP " + std::to_string(r.status) + " " + snippet(r.body);
    for (const auto& range : rb.expect_status) out.ok = out.ok || range.contains(r.status);
    if (!out.ok)
      out.error = "HTTP " + std::to_string(r.status) + (r.status == 401 || r.status == 403 ? " (the token was refused)" : "") + ": " + snippet(r.body);
    co_return out;
  }

  std::chrono::milliseconds step_timeout() const override { return timeout_; }

 private:
  asio::awaitable<net::HttpResult> call(const std::string& method, const std::string& url,
                                           std::vector<std::pair<std::string, std::string>> headers, std::string body) {
    auto u = net::parse_url(url);
    if (!u) co_return net::HttpError{net::HttpError::Stage::protocol, false, "not a URL after templating: " + url};
    std::shared_ptr<asio::ssl::context> tls;
    if (u->tls()) tls = net::default_tls_context();
    net::HttpConnection conn(ex_, *u, tls);
    net::HttpRequest req;
    req.method = method;
    req.target = u->target;
    req.headers = std::move(headers);
    if (!token_.empty()) req.headers.emplace_back("Authorization", "Bearer " + token_);
    req.body = std::move(body);
    co_return co_await conn.request(std::move(req), Clock::now() + timeout_, 1024 * 1024);
  }

  asio::any_io_executor ex_;
  std::string service_;
  const HttpApiSpec spec_;  // a copy: the action may outlive a reloaded config
  std::string token_;
  std::chrono::milliseconds timeout_{30'000};
};

}  // namespace

namespace {

using config::detail::Obj;

std::shared_ptr<const config::KindSpec> parse(Obj& o) {
  auto d = std::make_shared<HttpApiSpec>();
  if (auto t = o.duration("timeout", false, config::Duration{100})) d->timeout = *t;
  if (const json* r = o.get("rollback", true)) {
    Obj ro(o.ctx(), *r, o.at("rollback"));
    auto& rb = d->rollback;
    if (auto m = ro.one_of("method", {"GET", "POST", "PUT", "PATCH", "DELETE"})) rb.method = *m;
    if (auto u = ro.url("url", true)) rb.url = *u;
    if (auto h = ro.string_map("headers")) rb.headers = *h;
    if (const json* b = ro.get("body")) rb.body = *b;
    rb.token = ro.secret("token", false);
    if (const json* st = ro.get("expect_status")) {
      if (auto ranges = config::detail::parse_status(o.ctx(), ro.at("expect_status"), *st)) rb.expect_status = *ranges;
    }
  }
  if (const json* ob = o.get("observe")) {
    Obj oo(o.ctx(), *ob, o.at("observe"));
    HttpApiSpec::Observe obs;
    if (auto u = oo.url("url", true)) obs.url = *u;
    if (auto p = oo.str("json_pointer", true)) {
      try {
        json::json_pointer jp(*p);
        obs.json_pointer = *p;
      } catch (const json::exception&) {
        o.ctx().error(oo.at("json_pointer"), "expected a JSON pointer like \"/version\", found \"" + *p + "\"");
      }
    }
    d->observe = std::move(obs);
  }
  return d;
}

std::unique_ptr<Action> make(asio::any_io_executor ex, const std::string& service, const config::Deployment& d) {
  return std::make_unique<HttpApi>(std::move(ex), service, d);
}

}  // namespace

const Kind http_api_kind{{"http_api", parse}, make};

}  // namespace lastgood::actions
