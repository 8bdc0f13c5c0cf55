#include "actions/http_api.hpp"

#include "config/reader.hpp"
#include "net/http_client.hpp"

#include <spdlog/spdlog.h>

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

// What a failed step leaves done: a person must know what to undo or finish.
std::string done_before(size_t i) {
  if (i == 0) return "";
  return i == 1 ? " (step 1 was done)" : " (steps 1-" + std::to_string(i) + " were done)";
}

class HttpApi final : public Action {
 public:
  HttpApi(asio::any_io_executor ex, std::string service, const config::Deployment& d)
      : ex_(std::move(ex)), service_(std::move(service)), spec_(config::spec_as<HttpApiSpec>(d.spec)) {
    if (spec_.timeout) timeout_ = *spec_.timeout;
  }
  const char* kind() const override { return "http_api"; }

  asio::awaitable<Observation> observe() override {
    Observation o;
    Plan p{"", "", {service_, "", ""}, {}};
    auto res = co_await call("GET", expand(spec_.observe.url, p, true), {}, "");
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
    const json::json_pointer ptr(spec_.observe.json_pointer);
    if (doc.is_discarded() || !doc.contains(ptr)) {
      o.error = "observe: no " + ptr.to_string() + " in the answer";
      co_return o;
    }
    const json& v = doc.at(ptr);
    if (!v.is_string() && !v.is_number()) {
      o.error = "observe: " + ptr.to_string() + " is not a string or a number";
      co_return o;
    }
    o.live = ObservedRelease{v.is_string() ? v.get<std::string>() : v.dump(), std::nullopt, false};
    co_return o;
  }

  Plan plan(const std::string& from, const std::string& to, const Context& ctx) const override {
    Plan p{from, to, ctx, {}};
    p.steps.push_back("GET " + expand(spec_.observe.url, p, true) + ": the live release must still be " + from);
    for (const auto& st : spec_.rollback.steps) {
      std::string line = st.method + " " + expand(st.url, p, true);
      if (st.body) line += " " + expand_json(*st.body, p).dump();
      p.steps.push_back(line + (spec_.rollback.token ? " (with the bearer token)" : ""));
    }
    return p;
  }

  asio::awaitable<Outcome> execute(const Plan& p) override {
    Outcome out;
    // The live release, read just before the first call, must still be plan.from.
    const Observation now = co_await observe();
    if (!now.live) {
      out.error = "reading the live release before the switch failed: " + now.error + "; nothing was changed";
      co_return out;
    }
    if (now.live->id != p.from) co_return refused_not_from(p, now.live->id);
    const auto& steps = spec_.rollback.steps;
    for (size_t i = 0; i < steps.size(); ++i) {
      const auto& st = steps[i];
      const std::string name = spec_.rollback.single ? std::string("rollback request") : "step " + std::to_string(i + 1) + " (" + st.method + " " + expand(st.url, p, true) + ")";
      std::vector<std::pair<std::string, std::string>> headers;
      for (const auto& [k, v] : st.headers) headers.emplace_back(k, expand(v, p));
      // A target that keeps the highest token answers 409 to a lower one (ha.md); the key lets it
      // drop a repeated request of the same action (one key per step).
      if (!p.action_id.empty()) headers.emplace_back("Idempotency-Key", spec_.rollback.single ? p.action_id : p.action_id + "-" + std::to_string(i + 1));
      if (p.fence != 0) headers.emplace_back("X-Lastgood-Fence", std::to_string(p.fence));
      std::string body;
      if (st.body) {
        body = expand_json(*st.body, p).dump();
        headers.emplace_back("Content-Type", "application/json");
      }
      const std::string method = st.method;  // (GCC 12: no temporaries in co_await)
      const std::string url = expand(st.url, p, true);
      auto res = co_await call(method, url, headers, body);
      if (!out.output.empty()) out.output += "\n";
      if (auto* err = std::get_if<net::HttpError>(&res)) {
        out.output += name + ": " + err->message;
        out.error = name + " failed: " + err->message + done_before(i);
        co_return out;
      }
      auto& r = std::get<net::HttpResponse>(res);
      out.output += name + ": HTTP " + std::to_string(r.status) + " " + snippet(r.body);
      bool ok = false;
      for (const auto& range : st.expect_status) ok = ok || range.contains(r.status);
      if (!ok) {
        out.error = name + ": HTTP " + std::to_string(r.status) + (r.status == 401 || r.status == 403 ? " (the token was refused)" : "") + ": " +
                    snippet(r.body) + done_before(i);
        co_return out;
      }
    }
    out.ok = true;
    co_return out;
  }

  std::chrono::milliseconds step_timeout() const override {
    // Every request has its own deadline; the action as a whole may take one per request.
    return timeout_ * static_cast<int>(spec_.rollback.steps.size() + 1);
  }

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
    if (spec_.rollback.token) {  // read again at each use: a rotated token needs no restart
      std::string problem;
      const std::string token = spec_.rollback.token->fresh(&problem);
      if (!problem.empty()) spdlog::warn("http_api {}: token: {}", service_, problem);
      if (!token.empty()) req.headers.emplace_back("Authorization", "Bearer " + token);
    }
    req.body = std::move(body);
    co_return co_await conn.request(std::move(req), Clock::now() + timeout_, 1024 * 1024);
  }

  asio::any_io_executor ex_;
  std::string service_;
  const HttpApiSpec spec_;  // a copy: the action may outlive a reloaded config
  std::chrono::milliseconds timeout_{30'000};
};

}  // namespace

namespace {

using config::detail::Obj;

void parse_step(Obj& so, HttpApiSpec::Step& st) {
  if (auto m = so.one_of("method", {"GET", "POST", "PUT", "PATCH", "DELETE"})) st.method = *m;
  if (auto u = so.url("url", true)) st.url = *u;
  if (auto h = so.string_map("headers")) st.headers = *h;
  if (const json* b = so.get("body")) st.body = *b;
  if (const json* x = so.get("expect_status")) {
    if (auto ranges = config::detail::parse_status(so.ctx(), so.at("expect_status"), *x)) st.expect_status = *ranges;
  }
}

std::shared_ptr<const config::KindSpec> parse(Obj& o) {
  auto d = std::make_shared<HttpApiSpec>();
  if (auto t = o.duration("timeout", false, config::Duration{100})) d->timeout = *t;
  if (const json* r = o.get("rollback", true)) {
    Obj ro(o.ctx(), *r, o.at("rollback"));
    auto& rb = d->rollback;
    rb.token = ro.secret("token", false);
    if (const json* steps = ro.get("steps")) {
      rb.single = false;
      const std::string at = ro.at("steps");
      if (!steps->is_array() || steps->empty()) {
        o.ctx().error(at, "expected a non-empty array of requests ({\"method\", \"url\", \"headers\"?, \"body\"?, \"expect_status\"?})");
      } else {
        for (size_t i = 0; i < steps->size(); ++i) {
          Obj so(o.ctx(), (*steps)[i], at + "/" + std::to_string(i));
          HttpApiSpec::Step st;
          parse_step(so, st);
          rb.steps.push_back(std::move(st));
        }
      }
    } else {
      HttpApiSpec::Step st;
      parse_step(ro, st);
      rb.steps.push_back(std::move(st));
    }
  }
  // Required: without reading the live release lastgood cannot decide (every decision would hold
  // on "live release unknown" while validate says ok).
  const json* ob = o.get("observe");
  if (!ob)
    o.ctx().error(o.at("observe"), "required key is missing: without reading the live release ({\"url\", \"json_pointer\"}) lastgood cannot decide a rollback");
  if (ob) {
    Obj oo(o.ctx(), *ob, o.at("observe"));
    auto& obs = d->observe;
    if (auto u = oo.url("url", true)) obs.url = *u;
    if (auto p = oo.str("json_pointer", true)) {
      try {
        json::json_pointer jp(*p);
        obs.json_pointer = *p;
      } catch (const json::exception&) {
        o.ctx().error(oo.at("json_pointer"), "expected a JSON pointer like \"/version\", found \"" + *p + "\"");
      }
    }
  }
  return d;
}

std::unique_ptr<Action> make(asio::any_io_executor ex, const std::string& service, const config::Deployment& d) {
  return std::make_unique<HttpApi>(std::move(ex), service, d);
}

}  // namespace

const Kind http_api_kind{{"http_api", parse}, make};

}  // namespace lastgood::actions
