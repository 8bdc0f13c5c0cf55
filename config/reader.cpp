#include "config/reader.hpp"

#include <algorithm>
#include <cctype>

#include <re2/re2.h>

#include "net/url.hpp"

namespace lastgood::config::detail {

std::string escape_token(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

std::optional<std::string> Obj::url(const std::string& key, bool required, const char* expected) {
  auto u = str(key, required);
  if (u && !net::parse_url(*u)) {
    c_.error(at(key), std::string("expected ") + expected + ", found \"" + *u + "\"");
    return std::nullopt;
  }
  return u;
}

std::string nearest(const std::string& v, const std::vector<std::string>& choices) {
  std::string best;
  size_t best_d = std::max<size_t>(2, v.size() / 3) + 1;
  for (const auto& c : choices) {
    const size_t d = edit_distance(v, c);
    if (d < best_d) {
      best = c;
      best_d = d;
    }
  }
  return best;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

const char* type_name(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    default: return "something else";
  }
}

std::string quoted_list(const std::vector<std::string>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + v[i];
  return out;
}


std::optional<Severity> parse_severity(const std::string& s) {
  if (s == "P0") return Severity::P0;
  if (s == "P1") return Severity::P1;
  if (s == "P2") return Severity::P2;
  return std::nullopt;
}

std::optional<std::vector<StatusRange>> parse_status(Ctx& c, const std::string& ptr, const json& v) {
  std::vector<StatusRange> out;
  auto one = [&](const json& e, const std::string& p) -> bool {
    StatusRange r;
    if (e.is_number_integer()) {
      r.lo = r.hi = e.get<int>();
    } else if (e.is_string()) {
      static const RE2 re(R"(\s*(\d{3})\s*(?:-\s*(\d{3}))?\s*)");
      const std::string s = e.get<std::string>();
      std::string lo, hi;
      if (!RE2::FullMatch(s, re, &lo, &hi)) {
        c.error(p, "expected a status code or range like \"200-299\", found \"" + s + "\"");
        return false;
      }
      r.lo = std::stoi(lo);
      r.hi = hi.empty() ? r.lo : std::stoi(hi);
    } else {
      c.error(p, std::string("expected a status code, a range like \"200-299\" or a list of them, found ") + type_name(e));
      return false;
    }
    if (r.lo < 100 || r.hi > 599 || r.lo > r.hi) {
      c.error(p, "expected status codes from 100 to 599 with the lower bound first");
      return false;
    }
    out.push_back(r);
    return true;
  };
  if (v.is_array()) {
    if (v.empty()) {
      c.error(ptr, "expected at least one status code");
      return std::nullopt;
    }
    bool good = true;
    for (size_t i = 0; i < v.size(); ++i) good = one(v[i], ptr + "/" + std::to_string(i)) && good;
    if (!good) return std::nullopt;
  } else if (!one(v, ptr)) {
    return std::nullopt;
  }
  return out;
}

void check_name(Ctx& c, const std::string& ptr, const std::string& name, const char* what) {
  const bool control = std::any_of(name.begin(), name.end(), [](char ch) { return static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f; });
  if (name.empty() || name.size() > 128 || control)
    c.error(ptr, std::string(what) + ": expected 1 to 128 printable characters on one line (no NUL, CR, LF or other control characters)");
}

}  // namespace lastgood::config::detail
