#include "actions/http_api.hpp"

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
  HttpApi(asio::any_io_executor ex, std::string service, const config::Deployment& d) : ex_(std::move(ex)), service_(std::move(service)) {
    rb_ = d.spec.at("rollback");
    if (d.spec.contains("observe")) ob_ = d.spec.at("observe");
    if (auto it = d.secrets.find("token"); it != d.secrets.end() && it->second.resolved()) token_ = it->second.value();
    if (d.spec.contains("timeout")) timeout_ = *config::parse_duration(d.spec.at("timeout").get<std::string>());
    if (rb_.contains("expect_status")) {
      // Validated at load: "200-299", 204 or a list of those.
      auto add = [&](const json& e) {
        if (e.is_number_integer()) expect_.push_back({e.get<int>(), e.get<int>()});
        else {
          std::string s = e.get<std::string>();
          auto dash = s.find('-');
          expect_.push_back({std::stoi(s.substr(0, dash)), std::stoi(dash == std::string::npos ? s : s.substr(dash + 1))});
        }
      };
      if (rb_["expect_status"].is_array()) for (const auto& e : rb_["expect_status"]) add(e);
      else add(rb_["expect_status"]);
    } else {
      expect_.push_back({200, 299});
    }
  }
  const char* kind() const override { return "http_api"; }

  asio::awaitable<Observation> observe() override {
    Observation o;
    if (ob_.is_null()) {
      o.error = "no observe URL configured";
      co_return o;
    }
    Plan p{"", "", {service_, "", ""}, {}};
    auto res = co_await call("GET", expand(ob_["url"].get<std::string>(), p, true), {}, "");
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
    const json::json_pointer ptr(ob_["json_pointer"].get<std::string>());
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
    if (!ob_.is_null()) p.steps.push_back("GET " + expand(ob_["url"].get<std::string>(), p, true) + ": the live release must still be " + from);
    std::string line = rb_.value("method", "POST") + " " + expand(rb_["url"].get<std::string>(), p, true);
    if (rb_.contains("body")) line += " " + expand_json(rb_["body"], p).dump();
    p.steps.push_back(line + (token_.empty() ? "" : " (with the bearer token)"));
    return p;
  }

  asio::awaitable<Outcome> execute(const Plan& p) override {
    Outcome out;
    if (!ob_.is_null()) {  // the live release, read just before the call, must still be plan.from
      const Observation now = co_await observe();
      if (!now.live) {
        out.error = "reading the live release before the switch failed: " + now.error + "; nothing was changed";
        co_return out;
      }
      if (now.live->id != p.from) co_return refused_not_from(p, now.live->id);
    }
    std::vector<std::pair<std::string, std::string>> headers;
    if (rb_.contains("headers"))
      for (auto& [k, v] : rb_["headers"].items()) headers.emplace_back(k, expand(v.get<std::string>(), p));
    std::string body;
    if (rb_.contains("body")) {
      body = expand_json(rb_["body"], p).dump();
      headers.emplace_back("Content-Type", "application/json");
    }
    auto res = co_await call(rb_.value("method", "POST"), expand(rb_["url"].get<std::string>(), p, true), headers, body);
    if (auto* err = std::get_if<net::HttpError>(&res)) {
      out.error = err->message;
      co_return out;
    }
    auto& r = std::get<net::HttpResponse>(res);
    out.output = "HTTP " + std::to_string(r.status) + " " + snippet(r.body);
    for (const auto& [lo, hi] : expect_) out.ok = out.ok || (r.status >= lo && r.status <= hi);
    if (!out.ok)
      out.error = "HTTP " + std::to_string(r.status) + (r.status == 401 || r.status == 403 ? " (the token was refused)" : "") + ": " + snippet(r.body);
    co_return out;
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
    if (!token_.empty()) req.headers.emplace_back("Authorization", "Bearer " + token_);
    req.body = std::move(body);
    co_return co_await conn.request(std::move(req), Clock::now() + timeout_, 1024 * 1024);
  }

  asio::any_io_executor ex_;
  std::string service_;
  json rb_, ob_;
  std::string token_;
  std::chrono::milliseconds timeout_{30'000};
  std::vector<std::pair<int, int>> expect_;
};

}  // namespace

std::unique_ptr<Action> make_http_api(asio::any_io_executor ex, const std::string& service, const config::Deployment& d) {
  return std::make_unique<HttpApi>(std::move(ex), service, d);
}

}  // namespace lastgood::actions
