#include "probes/prometheus.hpp"

#include <cmath>
#include <cstdlib>

#include "config/duration.hpp"
#include "config/reader.hpp"
#include "net/http_once.hpp"
#include "net/url.hpp"

#include <spdlog/spdlog.h>

namespace lastgood::probes {

namespace asio = boost::asio;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::optional<config::Duration> longest_range(const std::string& q) {
  std::optional<config::Duration> best;
  for (size_t i = 0; i < q.size(); ++i) {
    if (q[i] != '[') continue;
    const size_t end = q.find_first_of(":]", i + 1);
    if (end == std::string::npos) break;
    if (auto d = config::parse_duration(q.substr(i + 1, end - i - 1)))
      if (!best || *d > *best) best = *d;
    i = end;
  }
  return best;
}

namespace {

std::string url_encode(const std::string& v) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : v) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') out += static_cast<char>(c);
    else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// The labels as PromQL writes them, capped: the evidence of a sample, not a copy of the answer.
std::string labels_text(const json& metric) {
  std::string out = "{";
  if (metric.is_object())
    for (auto it = metric.begin(); it != metric.end(); ++it) {
      if (out.size() > 1) out += ", ";
      out += it.key().substr(0, 100) + "=\"" + (it->is_string() ? it->get<std::string>() : it->dump()).substr(0, 200) + "\"";
      if (out.size() > 500) return out.substr(0, 500) + "...}";
    }
  return out + "}";
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

class PrometheusProbe final : public Probe {
 public:
  PrometheusProbe(asio::any_io_executor ex, std::string service, const config::Probe& spec)
      : ex_(std::move(ex)), service_(std::move(service)), spec_(spec), p_(config::spec_as<PrometheusSpec>(spec.spec)) {
    std::string base = p_.url;
    while (!base.empty() && base.back() == '/') base.pop_back();
    request_url_ = base + "/api/v1/query?query=" + url_encode(p_.query);
  }
  const config::Probe& spec() const override { return spec_; }

  asio::awaitable<ProbeResult> run() override {
    ProbeResult r = begin_result(service_, spec_.name);
    const auto t0 = Clock::now();
    const auto deadline = t0 + spec_.timeout;
    std::vector<std::pair<std::string, std::string>> headers{{"Accept", "application/json"}};
    if (p_.token) {
      std::string problem;
      const std::string token = p_.token->fresh(&problem);
      if (!problem.empty()) spdlog::warn("probe {}/{}: token: {}", service_, spec_.name, problem);
      if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);
    }
    const std::string method = "GET";
    const std::string url = request_url_;
    std::string no_body;
    const std::size_t max_body = 4 * 1024 * 1024;
    net::HttpResult res = co_await net::http_once(ex_, method, url, headers, no_body, deadline, max_body);
    r.timing.total = Clock::now() - t0;
    // Everything below that is not a judged sample is the watcher unable to judge: error.
    auto cannot_judge = [&](std::string why) {
      r.outcome = Outcome::error;
      r.reason = "prometheus: " + std::move(why);
      r.failures.push_back({"prometheus", r.reason});
    };
    if (auto* err = std::get_if<net::HttpError>(&res)) {
      cannot_judge("unreachable: " + err->message);
      co_return r;
    }
    const auto& resp = std::get<net::HttpResponse>(res);
    const json doc = json::parse(resp.body, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
      cannot_judge("HTTP " + std::to_string(resp.status) + " with a body that is not a JSON object");
      co_return r;
    }
    if (doc.value("status", "") != "success") {
      const std::string type = doc.contains("errorType") && doc["errorType"].is_string() ? doc["errorType"].get<std::string>() : "unknown";
      const std::string msg = doc.contains("error") && doc["error"].is_string() ? doc["error"].get<std::string>() : "no error message";
      cannot_judge("query failed (HTTP " + std::to_string(resp.status) + ", " + type + "): " + msg.substr(0, 300));
      co_return r;
    }
    if (auto w = doc.find("warnings"); w != doc.end() && w->is_array() && !w->empty()) {
      cannot_judge("answer carries warnings, not judged: " + ((*w)[0].is_string() ? (*w)[0].get<std::string>().substr(0, 300) : w->dump()));
      co_return r;
    }
    const json* data = doc.contains("data") && doc["data"].is_object() ? &doc["data"] : nullptr;
    const std::string type = data && (*data).contains("resultType") && (*data)["resultType"].is_string() ? (*data)["resultType"].get<std::string>() : "";
    struct Sample {
      json labels;
      double value;
    };
    std::vector<Sample> samples;
    auto value_of = [](const json& pair, double* out) {
      if (!pair.is_array() || pair.size() != 2 || !pair[1].is_string()) return false;
      const std::string s = pair[1].get<std::string>();
      char* end = nullptr;
      const double v = std::strtod(s.c_str(), &end);
      if (end == s.c_str() || *end != '\0') return false;
      *out = v;
      return true;
    };
    if (type == "vector" && (*data).contains("result") && (*data)["result"].is_array()) {
      for (const auto& x : (*data)["result"]) {
        double v = 0;
        if (!x.is_object() || !x.contains("value") || !value_of(x["value"], &v)) {
          cannot_judge("a sample in the answer is not [time, \"value\"]");
          co_return r;
        }
        samples.push_back({x.contains("metric") ? x["metric"] : json::object(), v});
      }
    } else if (type == "scalar") {
      double v = 0;
      if (!value_of((*data).value("result", json()), &v)) {
        cannot_judge("the scalar in the answer is not [time, \"value\"]");
        co_return r;
      }
      samples.push_back({json::object(), v});
    } else {
      cannot_judge("expected an instant vector or a scalar, found resultType \"" + type + "\"");
      co_return r;
    }
    const size_t returned = samples.size();
    std::erase_if(samples, [](const Sample& s) { return std::isnan(s.value); });  // 0/0: no traffic, no data
    r.details = {{"query", p_.query}, {"samples", returned}};
    if (samples.empty()) {
      const std::string what = returned ? "only NaN samples (no data)" : "an empty result";
      if (p_.empty == "ok") {
        finish_result(r);
      } else if (p_.empty == "fail") {
        r.failures.push_back({"empty", "the query returned " + what});
        finish_result(r);
      } else {
        cannot_judge("the query returned " + what + " (set \"empty\" to \"ok\" or \"fail\" to judge it)");
      }
      co_return r;
    }
    // The worst sample outside the bounds is the evidence.
    const Sample* worst = nullptr;
    double worst_by = 0;
    std::string worst_why;
    for (const auto& s : samples) {
      double by = 0;
      std::string why;
      if (p_.max && s.value > *p_.max) {
        by = s.value - *p_.max;
        why = "above max " + number(*p_.max);
      } else if (p_.min && s.value < *p_.min) {
        by = *p_.min - s.value;
        why = "below min " + number(*p_.min);
      } else {
        continue;
      }
      if (!worst || by > worst_by || std::isinf(by)) {
        worst = &s;
        worst_by = by;
        worst_why = why;
      }
    }
    if (worst) {
      r.details["value"] = std::isfinite(worst->value) ? json(worst->value) : json(number(worst->value));
      r.details["labels"] = worst->labels.dump().size() <= 2000 ? worst->labels : json(labels_text(worst->labels));
      r.failures.push_back({"expect", "sample " + labels_text(worst->labels) + " = " + number(worst->value) + " " + worst_why});
    } else {
      double top = samples[0].value;
      for (const auto& s : samples) top = std::max(top, s.value);
      r.details["value"] = std::isfinite(top) ? json(top) : json(number(top));
    }
    finish_result(r);
    co_return r;
  }

 private:
  asio::any_io_executor ex_;
  std::string service_;
  const config::Probe& spec_;
  const PrometheusSpec& p_;
  std::string request_url_;
};

using config::detail::Obj;

std::shared_ptr<const config::KindSpec> parse(Obj& o) {
  auto p = std::make_shared<PrometheusSpec>();
  if (auto u = o.url("url", true)) p->url = *u;
  if (auto q = o.str("query", true)) p->query = *q;
  if (const json* e = o.get("expect", true)) {
    Obj x(o.ctx(), *e, o.at("expect"));
    for (const char* k : {"min", "max"}) {
      const json* v = x.get(k);
      if (!v) continue;
      if (!v->is_number()) x.ctx().error(x.at(k), "expected a number");
      else (std::string(k) == "min" ? p->min : p->max) = v->get<double>();
    }
    if (x.ok() && !p->min && !p->max && !x.has("min") && !x.has("max")) o.ctx().error(o.at("expect"), "expected \"min\", \"max\" or both");
    if (p->min && p->max && *p->min > *p->max) o.ctx().error(x.at("min"), "expected min no greater than max");
  }
  if (auto e = o.one_of("empty", {"error", "ok", "fail"})) p->empty = *e;
  p->token = o.secret("token", false);
  return p;
}

std::unique_ptr<Probe> make(asio::any_io_executor ex, const std::string& service, const config::Probe& spec) {
  return std::make_unique<PrometheusProbe>(std::move(ex), service, spec);
}

}  // namespace

const Kind prometheus_kind{{"prometheus", parse}, make};

}  // namespace lastgood::probes
