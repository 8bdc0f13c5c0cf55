// The triggers and the rollback block of a service: rule kinds with their own keys, severity,
// "for" and "recover_after", and the rollback mode, budget and verification.
#include "config/reader.hpp"

#include <set>

namespace lastgood::config::detail {

namespace {

const std::vector<std::string> kRuleKinds = {"consecutive_failures", "x_of_y", "error_rate", "latency",
                                             "burn_rate",            "spread", "condition"};

void parse_rule(Ctx& c, const json& j, const std::string& ptr, Rule& r) {
  Obj o(c, j, ptr);
  if (!o.ok()) return;
  auto kind = o.one_of("kind", kRuleKinds, true);
  if (!kind) {
    o.skip_rest();
    return;
  }
  r.kind = *kind;
  if (r.kind == "consecutive_failures") {
    if (auto n = o.integer("count", 1, 1000000, true)) r.count = static_cast<int>(*n);
  } else if (r.kind == "x_of_y") {
    auto f = o.integer("failures", 1, 100000, true);
    auto of = o.integer("of", 1, 100000, true);
    if (f) r.failures = static_cast<int>(*f);
    if (of) r.of = static_cast<int>(*of);
    if (f && of && *f > *of) c.error(o.at("failures"), "expected failures no greater than \"of\" (" + std::to_string(*of) + ")");
  } else if (r.kind == "error_rate") {
    if (auto w = o.duration("window", true, Duration{1000})) r.window = *w;
    if (auto m = o.number("max", 0.0, 1.0, true)) r.max = *m;
    if (auto n = o.integer("min_samples", 1, 10000000)) r.min_samples = static_cast<int>(*n);
    if (auto e = o.number("max_error_share", 0.0, 1.0)) r.max_error_share = *e;
  } else if (r.kind == "latency") {
    if (auto p = o.number("percentile", 0.0, 100.0, true, true)) r.percentile = *p;
    if (auto w = o.duration("window", true, Duration{1000})) r.window = *w;
    if (auto m = o.duration("max", true, Duration{1})) r.max_latency = *m;
    if (auto n = o.integer("min_samples", 1, 10000000)) r.min_samples = static_cast<int>(*n);
    if (auto e = o.number("max_error_share", 0.0, 1.0)) r.max_error_share = *e;
  } else if (r.kind == "burn_rate") {
    if (auto s = o.number("slo", 0.0, 1.0, true, true)) {
      if (*s >= 1.0) c.error(o.at("slo"), "expected an SLO below 1 (e.g. 0.999)");
      r.slo = *s;
    }
    if (const json* ws = o.get("windows", true)) {
      const std::string wp = o.at("windows");
      if (!ws->is_array() || ws->empty()) {
        c.error(wp, "expected a non-empty array of [long, short, factor] triples");
      } else {
        for (size_t i = 0; i < ws->size(); ++i) {
          const json& t = (*ws)[i];
          const std::string tp = wp + "/" + std::to_string(i);
          if (!t.is_array() || t.size() != 3) {
            c.error(tp, "expected [long window, short window, factor], e.g. [\"1h\", \"5m\", 14.4]");
            continue;
          }
          auto lw = Obj::parse_duration_value(c, tp + "/0", t[0], Duration{1000});
          auto sw = Obj::parse_duration_value(c, tp + "/1", t[1], Duration{1000});
          if (!t[2].is_number() || t[2].get<double>() <= 0) {
            c.error(tp + "/2", "expected a positive burn factor like 14.4");
            continue;
          }
          if (lw && sw && *sw >= *lw) c.error(tp + "/1", "expected the short window to be shorter than the long one");
          if (lw && sw) r.burn_windows.push_back({*lw, *sw, t[2].get<double>()});
        }
      }
    }
  } else if (r.kind == "spread") {
    if (auto s = o.number("min_share", 0.0, 1.0, true, true)) r.min_share = *s;
  } else if (r.kind == "condition") {
    if (auto s = o.one_of("condition", {"status", "body_contains", "body_matches", "header", "json", "max_latency", "cert_valid_for",
                                        "reply_prefix", "integrity", "deprecated", "tag"},
                          true))
      r.condition = *s;
  }
}

}  // namespace

void parse_trigger(Ctx& c, const json& j, const std::string& ptr, Trigger& t, const std::set<std::string>& probe_names) {
  Obj o(c, j, ptr);
  if (!o.ok()) return;
  if (auto n = o.str("name", true)) {
    check_name(c, o.at("name"), *n, "trigger name");
    t.name = *n;
  }
  if (auto s = o.one_of("severity", {"P0", "P1", "P2"}, true)) t.severity = *parse_severity(*s);
  if (auto p = o.str("probe")) {
    if (!probe_names.count(*p)) c.error(o.at("probe"), "expected the name of a probe of this service, found \"" + *p + "\"");
    t.probe = *p;
  }
  if (const json* r = o.get("rule", true)) parse_rule(c, *r, o.at("rule"), t.rule);
  if (auto d = o.duration("for")) t.for_ = *d;
  if (auto d = o.duration("recover_after")) t.recover_after = *d;
  if (auto b = o.boolean("shadow")) t.shadow = *b;
}

void parse_rollback(Ctx& c, const json& j, const std::string& ptr, Rollback& r) {
  Obj o(c, j, ptr);
  if (!o.ok()) return;
  if (auto m = o.one_of("mode", {"alert", "approve", "auto"})) r.mode = *m;
  if (auto d = o.duration("rollback_window", false, Duration{1000})) r.rollback_window = *d;
  if (auto d = o.duration("cooldown")) r.cooldown = *d;
  if (auto n = o.integer("max_per_day", 0, 1000)) r.max_per_day = static_cast<int>(*n);
  if (auto d = o.duration("good_after")) r.good_after = *d;
  if (auto d = o.duration("approval_timeout", false, Duration{1000})) r.approval_timeout = *d;
  if (const json* v = o.get("verify")) {
    Obj vo(c, *v, o.at("verify"));
    if (auto d = vo.duration("within", false, Duration{100})) r.verify.within = *d;
    if (auto n = vo.integer("healthy_samples", 1, 10000)) r.verify.healthy_samples = static_cast<int>(*n);
  }
}

}  // namespace lastgood::config::detail
