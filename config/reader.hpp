#pragma once
// How config/ reads JSON: a context that collects problems (file, JSON pointer, what was
// expected) and a checked view of one object that knows which keys it has read, so that an
// unknown key is named with the nearest known one. Used by config/ and by the kinds' parsers in
// probes/ and actions/ (config/kind.hpp).
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.hpp"

namespace lastgood::config::detail {

using nlohmann::json;

std::string escape_token(const std::string& key);
size_t edit_distance(const std::string& a, const std::string& b);
// The choice closest to `v` when it is close enough to be a typo of it (a third of its length,
// at least 2 edits); "" when none is.
std::string nearest(const std::string& v, const std::vector<std::string>& choices);
const char* type_name(const nlohmann::json& j);
std::string quoted_list(const std::vector<std::string>& v);

struct Ctx {
  std::string file;
  LoadOptions opts;
  std::vector<Problem> problems;
  const Kinds* kinds = nullptr;
  void error(const std::string& ptr, std::string msg) { problems.push_back({file, ptr, std::move(msg)}); }
};

// Reads the keys of one JSON object. Every key asked for is "known"; finish() reports the rest
// as unknown, suggesting the closest known key.
class Obj {
 public:
  Obj(Ctx& c, const json& j, std::string ptr) : c_(c), j_(j), ptr_(std::move(ptr)) {
    ok_ = j_.is_object();
    if (!ok_) c_.error(ptr_, std::string("expected an object, found ") + type_name(j_));
  }
  ~Obj() { finish(); }
  Obj(const Obj&) = delete;
  Obj& operator=(const Obj&) = delete;

  bool ok() const { return ok_; }
  const std::string& ptr() const { return ptr_; }
  std::string at(const std::string& key) const { return ptr_ + "/" + escape_token(key); }
  Ctx& ctx() { return c_; }

  // The raw value, or nullptr when absent; marks the key known.
  const json* get(const std::string& key, bool required = false) {
    known_.insert(key);
    if (!ok_) return nullptr;
    auto it = j_.find(key);
    if (it == j_.end()) {
      if (required) c_.error(at(key), "required key is missing");
      return nullptr;
    }
    return &*it;
  }
  bool has(const std::string& key) const { return ok_ && j_.contains(key); }

  std::optional<std::string> str(const std::string& key, bool required = false, bool allow_empty = false) {
    const json* v = get(key, required);
    if (!v) return std::nullopt;
    if (!v->is_string()) return bad(key, *v, "a string");
    std::string s = v->get<std::string>();
    if (s.empty() && !allow_empty) {
      c_.error(at(key), "expected a non-empty string");
      return std::nullopt;
    }
    return s;
  }
  std::optional<std::string> one_of(const std::string& key, const std::vector<std::string>& choices, bool required = false) {
    auto s = str(key, required);
    if (!s) return std::nullopt;
    if (std::find(choices.begin(), choices.end(), *s) == choices.end()) {
      const std::string near = nearest(*s, choices);
      c_.error(at(key), "expected one of " + quoted_list(choices) + ", found \"" + *s + "\"" +
                            (near.empty() ? std::string() : " (did you mean \"" + near + "\"?)"));
      return std::nullopt;
    }
    return s;
  }
  // An absolute path (release folders, keys, known_hosts).
  std::optional<std::string> abs_path(const std::string& key, bool required = false) {
    auto s = str(key, required);
    if (s && s->front() != '/') {
      c_.error(at(key), "expected an absolute path, found \"" + *s + "\"");
      return std::nullopt;
    }
    return s;
  }
  // An http:// or https:// URL with a host; `expected` names it in the problem.
  std::optional<std::string> url(const std::string& key, bool required = false, const char* expected = "an http:// or https:// URL");
  std::optional<bool> boolean(const std::string& key) {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (v->is_string()) {
      static const std::set<std::string> yaml11 = {"yes", "no", "on", "off", "y", "n", "Yes", "No", "On", "Off", "YES", "NO", "ON", "OFF"};
      if (yaml11.count(v->get<std::string>())) {
        c_.error(at(key), "expected true or false, found the string \"" + v->get<std::string>() + "\" (YAML 1.2, which lastgood reads, has no yes/no/on/off booleans)");
        return std::nullopt;
      }
    }
    if (!v->is_boolean()) return bad(key, *v, "true or false");
    return v->get<bool>();
  }
  std::optional<long long> integer(const std::string& key, long long lo, long long hi, bool required = false) {
    const json* v = get(key, required);
    if (!v) return std::nullopt;
    if (!v->is_number_integer()) return bad(key, *v, "an integer");
    long long n = v->get<long long>();
    if (n < lo || n > hi) {
      c_.error(at(key), "expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) + ", found " + std::to_string(n));
      return std::nullopt;
    }
    return n;
  }
  std::optional<double> number(const std::string& key, double lo, double hi, bool required = false, bool lo_open = false) {
    const json* v = get(key, required);
    if (!v) return std::nullopt;
    if (!v->is_number()) return bad(key, *v, "a number");
    double d = v->get<double>();
    if (d < lo || d > hi || (lo_open && d == lo)) {
      std::ostringstream m;
      m << "expected a number " << (lo_open ? "above " : "from ") << lo << " to " << hi << ", found " << d;
      c_.error(at(key), m.str());
      return std::nullopt;
    }
    return d;
  }
  std::optional<Duration> duration(const std::string& key, bool required = false, Duration min = Duration{0}) {
    const json* v = get(key, required);
    if (!v) return std::nullopt;
    return parse_duration_value(c_, at(key), *v, min);
  }
  std::optional<std::vector<std::string>> strings(const std::string& key, bool required = false, bool non_empty = false) {
    const json* v = get(key, required);
    if (!v) return std::nullopt;
    if (!v->is_array()) return bad(key, *v, "an array of strings");
    std::vector<std::string> out;
    bool good = true;
    for (size_t i = 0; i < v->size(); ++i) {
      if (!(*v)[i].is_string() || (*v)[i].get<std::string>().empty()) {
        c_.error(at(key) + "/" + std::to_string(i), std::string("expected a non-empty string, found ") + type_name((*v)[i]));
        good = false;
      } else {
        out.push_back((*v)[i].get<std::string>());
      }
    }
    if (good && non_empty && out.empty()) {
      c_.error(at(key), "expected at least one entry");
      return std::nullopt;
    }
    if (!good) return std::nullopt;
    return out;
  }
  std::optional<std::map<std::string, std::string>> string_map(const std::string& key) {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_object()) return bad(key, *v, "an object of strings");
    std::map<std::string, std::string> out;
    bool good = true;
    for (auto& [k, val] : v->items()) {
      if (!val.is_string()) {
        c_.error(at(key) + "/" + escape_token(k), std::string("expected a string, found ") + type_name(val));
        good = false;
      } else {
        out[k] = val.get<std::string>();
      }
    }
    if (!good) return std::nullopt;
    return out;
  }
  // A secret given as NAME_env or NAME_file (exactly one). `inline_ok` also accepts NAME itself.
  std::optional<Secret> secret(const std::string& name, bool required, bool inline_ok = false) {
    auto env = str(name + "_env");
    auto file = str(name + "_file");
    std::optional<std::string> inl;
    if (inline_ok) inl = str(name);
    else if (has(name)) {
      known_.insert(name);
      c_.error(at(name), "secrets are not accepted inline: use " + name + "_env (an environment variable) or " + name + "_file");
      return std::nullopt;
    }
    int n = (env ? 1 : 0) + (file ? 1 : 0) + (inl ? 1 : 0);
    if (n == 0) {
      if (required)
        c_.error(ptr_ + "/" + name + "_env",
                 "required: give " + name + "_env (an environment variable) or " + name + "_file" + (inline_ok ? " or " + name : ""));
      return std::nullopt;
    }
    if (n > 1) {
      c_.error(ptr_, "give only one of " + name + "_env, " + name + "_file" + (inline_ok ? ", " + name : ""));
      return std::nullopt;
    }
    Secret s = env ? Secret::from_env(*env) : file ? Secret::from_file(*file) : Secret::from_inline(*inl);
    if (c_.opts.resolve_secrets && !inl) {
      if (auto e = s.resolve()) c_.error(at(env ? name + "_env" : name + "_file"), *e);
    }
    return s;
  }

  // The object's kind was not understood: its other keys are not reported as unknown (one
  // error per mistake: the kind's error says it all).
  void skip_rest() { finished_ = true; }

  void finish() {
    if (!ok_ || finished_) return;
    finished_ = true;
    for (auto& [k, v] : j_.items()) {
      if (known_.count(k)) continue;
      std::string best;
      size_t best_d = 3;
      for (const auto& cand : known_) {
        size_t d = edit_distance(k, cand);
        if (d < best_d || (d == best_d && best.empty() && d <= std::max<size_t>(2, cand.size() / 3))) {
          if (d <= std::max<size_t>(1, std::min(k.size(), cand.size()) / 3) || d <= 2) {
            best = cand;
            best_d = d;
          }
        }
      }
      c_.error(at(k), "unknown key \"" + k + "\"" + (best.empty() ? std::string() : " (did you mean \"" + best + "\"?)"));
    }
  }

  static std::optional<Duration> parse_duration_value(Ctx& c, const std::string& ptr, const json& v, Duration min) {
    if (!v.is_string()) {
      c.error(ptr, std::string("expected a duration string like \"30s\" (units ms, s, m, h, d), found ") + type_name(v));
      return std::nullopt;
    }
    auto d = parse_duration(v.get<std::string>());
    if (!d) {
      c.error(ptr, "expected a duration like \"750ms\", \"30s\", \"5m\", \"2h\" or \"7d\", found \"" + v.get<std::string>() + "\"");
      return std::nullopt;
    }
    if (*d < min) {
      c.error(ptr, "expected a duration of at least " + format_duration(min) + ", found \"" + v.get<std::string>() + "\"");
      return std::nullopt;
    }
    return d;
  }

 private:
  template <typename T = int>
  std::nullopt_t bad(const std::string& key, const json& v, const char* expected) {
    c_.error(at(key), std::string("expected ") + expected + ", found " + type_name(v));
    return std::nullopt;
  }

  Ctx& c_;
  const json& j_;
  std::string ptr_;
  bool ok_ = false;
  bool finished_ = false;
  std::set<std::string> known_;
};

// Iterates an array at obj[key], calling fn(element, pointer, index).
template <typename F>
void each(Obj& o, const std::string& key, bool required, F fn) {
  const json* v = o.get(key, required);
  if (!v) return;
  if (!v->is_array()) {
    o.ctx().error(o.at(key), std::string("expected an array, found ") + type_name(*v));
    return;
  }
  for (size_t i = 0; i < v->size(); ++i) fn((*v)[i], o.at(key) + "/" + std::to_string(i), i);
}

std::optional<Severity> parse_severity(const std::string& s);
// "200", "200-299", 204, or an array of those.
std::optional<std::vector<StatusRange>> parse_status(Ctx& c, const std::string& ptr, const json& v);
// Names that end up in logs, metric labels, the ledger and the page: printable, one line, short.
void check_name(Ctx& c, const std::string& ptr, const std::string& name, const char* what);
// A service's trigger (its probe must be in probe_names) and its rollback block (triggers.cpp).
void parse_trigger(Ctx& c, const json& j, const std::string& ptr, Trigger& t, const std::set<std::string>& probe_names);
void parse_rollback(Ctx& c, const json& j, const std::string& ptr, Rollback& r);
// The "ha" block (ha.cpp).
void parse_ha(Ctx& c, const json& j, const std::string& ptr, Ha& ha);
// A probe and a deployment block: the common keys here, the rest by the parser of `kind` from the
// context's table (kinds.cpp).
void parse_probe(Ctx& c, const json& j, const std::string& ptr, Probe& p);
void parse_deployment(Ctx& c, const json& j, const std::string& ptr, Deployment& d);

}  // namespace lastgood::config::detail
