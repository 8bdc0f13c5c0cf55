#include "watchdog/state/silences.hpp"

#include <algorithm>
#include <ctime>
#include <set>

#include "watchdog/pipeline/clock.hpp"

namespace lastgood::watchdog {

using nlohmann::json;

std::string format_time(policy::TimePoint t) {
  const std::time_t s = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&s, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool Silence::covers(const std::string& service) const { return std::find(services.begin(), services.end(), service) != services.end(); }

json Silence::to_json(policy::TimePoint now) const {
  json j{{"id", id},
         {"services", services},
         {"starts_at", format_time(starts_at)},
         {"ends_at", format_time(ends_at)},
         {"by", by},
         {"comment", comment},
         {"source", from_config ? "config" : "api"},
         {"state", expired_at || now >= ends_at ? "ended" : now < starts_at ? "pending" : "active"}};
  if (expired_at) {
    j["expired_at"] = format_time(*expired_at);
    j["expired_by"] = expired_by;
  }
  return j;
}

const Silence* Silences::active(const std::string& service, policy::TimePoint now) const {
  const Silence* best = nullptr;
  for (const auto& s : silences_)
    if (s.active(now) && s.covers(service) && (!best || s.ends_at > best->ends_at)) best = &s;
  return best;
}

void Silences::add(Silence s) {
  const auto now = s.starts_at;
  silences_.push_back(std::move(s));
  trim(now);
}

const Silence* Silences::find(const std::string& id) const {
  for (const auto& s : silences_)
    if (s.id == id) return &s;
  return nullptr;
}

bool Silences::expire(const std::string& id, const std::string& by, policy::TimePoint now) {
  for (auto& s : silences_) {
    if (s.id != id || s.from_config || s.expired_at || now >= s.ends_at) continue;
    s.expired_at = now;
    s.expired_by = by;
    return true;
  }
  return false;
}

void Silences::set_maintenance(std::vector<Silence> windows) {
  std::erase_if(silences_, [](const Silence& s) { return s.from_config; });
  for (auto& w : windows) {
    w.from_config = true;
    silences_.push_back(std::move(w));
  }
}

void Silences::set_shared(std::vector<Silence> shared) {
  std::set<std::string> ids;
  for (const auto& s : shared) ids.insert(s.id);
  std::erase_if(silences_, [&](const Silence& s) { return s.shared || (!s.from_config && ids.count(s.id)); });
  for (auto& s : shared) {
    s.shared = true;
    silences_.push_back(std::move(s));
  }
}

json Silence::to_record() const {
  json j{{"id", id}, {"services", services}, {"starts_at", ms(starts_at)}, {"ends_at", ms(ends_at)}, {"by", by}, {"comment", comment}};
  if (expired_at) {
    j["expired_at"] = ms(*expired_at);
    j["expired_by"] = expired_by;
  }
  return j;
}

std::optional<Silence> Silence::from_record(const json& d) {
  if (!d.is_object() || !d.contains("id") || !d["id"].is_string() || !d.contains("services") || !d["services"].is_array()) return std::nullopt;
  auto num = [&](const char* k) -> std::optional<long long> {
    if (!d.contains(k) || !d[k].is_number_integer()) return std::nullopt;
    return d[k].get<long long>();
  };
  auto text = [&](const char* k) { return d.contains(k) && d[k].is_string() ? d[k].get<std::string>() : std::string(); };
  Silence s;
  s.id = d["id"].get<std::string>();
  for (const auto& x : d["services"])
    if (x.is_string()) s.services.push_back(x.get<std::string>());
  const auto start = num("starts_at"), end = num("ends_at");
  if (!start || !end) return std::nullopt;
  s.starts_at = from_ms(*start);
  s.ends_at = from_ms(*end);
  s.by = text("by");
  s.comment = text("comment");
  if (auto e = num("expired_at")) {
    s.expired_at = from_ms(*e);
    s.expired_by = text("expired_by");
  }
  return s;
}

void Silences::trim(policy::TimePoint now) {
  // Ended API silences beyond the last kKeptEnded go (the ledger keeps them all).
  std::size_t ended = 0;
  for (const auto& s : silences_) ended += !s.from_config && (s.expired_at || now >= s.ends_at);
  for (auto it = silences_.begin(); ended > kKeptEnded && it != silences_.end();) {
    if (!it->from_config && (it->expired_at || now >= it->ends_at)) {
      it = silences_.erase(it);
      --ended;
    } else {
      ++it;
    }
  }
}

json Silences::list(policy::TimePoint now) const {
  std::vector<const Silence*> open, ended;
  for (const auto& s : silences_) (s.expired_at || now >= s.ends_at ? ended : open).push_back(&s);
  std::sort(open.begin(), open.end(), [](auto* a, auto* b) { return a->ends_at < b->ends_at; });
  std::sort(ended.begin(), ended.end(), [](auto* a, auto* b) { return a->ends_at > b->ends_at; });
  json out = json::array();
  for (auto* s : open) out.push_back(s->to_json(now));
  for (auto* s : ended) out.push_back(s->to_json(now));
  return out;
}

void Silences::replay(Event type, const LedgerEntry& e) {
  const auto& d = e.data;
  if (type == Event::silence_added) {
    if (auto s = Silence::from_record(d)) add(std::move(*s));
  } else if (type == Event::silence_expired && d.contains("id") && d["id"].is_string()) {
    expire(d["id"].get<std::string>(), d.contains("by") && d["by"].is_string() ? d["by"].get<std::string>() : "", from_ms(e.ts_ms));
  }
}

}  // namespace lastgood::watchdog
