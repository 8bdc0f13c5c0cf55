#include "watchdog/api/status_page.hpp"

#include <time.h>

#include <algorithm>
#include <array>

namespace lastgood::watchdog::status_page {

using nlohmann::json;

namespace {

constexpr long long kMinute = 60LL * 1000, kHour = 60 * kMinute, kDay = 24 * kHour;

struct tm utc(long long ms) {
  const time_t t = static_cast<time_t>(ms / 1000);
  struct tm out {};
  ::gmtime_r(&t, &out);
  return out;
}

bool same_day(long long a, long long b) {
  const auto x = utc(a), y = utc(b);
  return x.tm_year == y.tm_year && x.tm_yday == y.tm_yday;
}

// "a major outage", "major_outage", "Major outage" for a severity.
struct Impact {
  const char* phrase;
  const char* code;
  const char* title;
};
Impact impact_of(const std::string& severity) {
  if (severity == "P0") return {"a major outage", "major_outage", "Major outage"};
  if (severity == "P2") return {"degraded performance", "degraded_performance", "Degraded performance"};
  return {"a partial outage", "partial_outage", "Partial outage"};
}

// "A", "A and B", "A, B and C".
std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += i + 1 == names.size() ? " and " : ", ";
    out += names[i];
  }
  return out;
}

// "on Dec 3 from 14:05 to 14:21 UTC" or "from Dec 3, 23:50 to Dec 4, 00:10 UTC".
std::string range(long long from, long long to) {
  if (same_day(from, to) && time_of(from) == time_of(to)) return "on " + day_of(from) + " at " + time_of(from) + " UTC";
  if (same_day(from, to)) return "on " + day_of(from) + " from " + time_of(from) + " to " + time_of(to) + " UTC";
  return "from " + day_of(from) + ", " + time_of(from) + " to " + day_of(to) + ", " + time_of(to) + " UTC";
}

// "14:09 UTC", or "Dec 5, 14:09 UTC" when not on the day of `now`.
std::string moment(long long ms, long long now) {
  return (same_day(ms, now) ? "" : day_of(ms) + ", ") + time_of(ms) + " UTC";
}

std::string iso(long long ms) { return iso8601(ms); }

std::string service_message(const ServiceFacts& s, const std::string& state, long long now) {
  if (state == "maintenance") return "Scheduled maintenance until " + moment(*s.maintenance_until_ms, now) + ".";
  if (state == "unknown") return s.watcher_healthy ? "Not checked yet." : "We cannot check it right now.";
  if (s.open_incident_status == "rolling_back") return "We are restoring its previous version.";
  if (s.restored_ms && s.open_incident_status == "verifying")
    return "At " + moment(*s.restored_ms, now) + " we restored its previous version and are checking that it works.";
  if (state != "operational") return "We are working on it.";
  return "";
}

std::string incident_text(const IncidentFacts& i, long long now) {
  const Impact im = impact_of(i.severity);
  if (i.ongoing) {
    std::string t = i.public_name + " has had " + im.phrase + " since " + moment(i.started_ms, now) + ".";
    if (i.rolling_back) return t + " We are restoring its previous version.";
    if (i.restored_ms) return t + " At " + moment(*i.restored_ms, now) + " we restored its previous version and are checking that it works.";
    return t + " We are working on it.";
  }
  if (!i.ended_ms)
    return i.public_name + " had " + im.phrase + " starting " + moment(i.started_ms, now) + ". It has since been resolved.";
  const long long end = std::max(*i.ended_ms, i.started_ms);
  std::string t = i.public_name + " had " + im.phrase + " " + range(i.started_ms, end) + " (" + span_of(end - i.started_ms) + ").";
  if (i.how_ended == "verified" && i.restored_ms)
    return t + " We restored its previous version at " + moment(*i.restored_ms, *i.restored_ms) + " and confirmed at " + moment(end, *i.restored_ms) +
           " that it works normally.";
  if (i.how_ended == "cleared") return t + " Our engineers resolved it.";
  return t + " It has worked normally since.";
}

std::string escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

const char* state_label(const std::string& s) {
  if (s == "operational") return "Operational";
  if (s == "degraded") return "Degraded";
  if (s == "outage") return "Outage";
  if (s == "maintenance") return "Maintenance";
  return "Unknown";
}

}  // namespace

std::string day_of(long long ms) {
  static constexpr std::array<const char*, 12> kMonths{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const auto t = utc(ms);
  return std::string(kMonths[static_cast<size_t>(t.tm_mon)]) + " " + std::to_string(t.tm_mday);
}

std::string time_of(long long ms) {
  const auto t = utc(ms);
  char buf[8];
  std::snprintf(buf, sizeof buf, "%02d:%02d", t.tm_hour % 100, t.tm_min % 100);
  return buf;
}

std::string span_of(long long ms) {
  if (ms < kMinute) return "less than a minute";
  auto unit = [](long long n, const char* one) { return std::to_string(n) + " " + one + (n == 1 ? "" : "s"); };
  if (ms < kHour) return unit(ms / kMinute, "minute");
  if (ms < kDay) {
    const long long m = (ms % kHour) / kMinute;
    return unit(ms / kHour, "hour") + (m ? " " + unit(m, "minute") : "");
  }
  const long long h = (ms % kDay) / kHour;
  return unit(ms / kDay, "day") + (h ? " " + unit(h, "hour") : "");
}

std::optional<IncidentFacts> from_incident(const Incident& i, const std::string& public_name, bool open, bool shadow, bool service_affected_now) {
  if (shadow || public_name.empty()) return std::nullopt;
  if (i.breach.is_null() && i.action.is_null()) return std::nullopt;  // a request that changed nothing
  IncidentFacts f;
  f.public_name = public_name;
  f.severity = i.severity;
  f.started_ms = i.opened_ms;
  if (i.action.is_object() && i.action.value("ok", false)) {
    if (i.action.contains("finished_at")) f.restored_ms = i.action.value("finished_at", 0LL);
    else if (i.action.contains("reconciled_at")) f.restored_ms = i.action.value("reconciled_at", 0LL);
  }
  const json& out = i.outcome;
  if (i.status == "verified" && out.is_object() && out.contains("verification")) {
    f.ended_ms = out["verification"].value("at", 0LL);
    f.how_ended = "verified";
  } else if (i.status == "recovered") {
    f.ended_ms = i.last_ms;
    for (auto it = i.timeline.rbegin(); it != i.timeline.rend(); ++it)
      if (it->event == "recovered") {
        f.ended_ms = it->at_ms;
        break;
      }
    f.how_ended = "recovered";
  } else if (out.is_object() && out.contains("cleared")) {
    f.ended_ms = out["cleared"].value("at", 0LL);
    f.how_ended = "cleared";
  }
  f.ongoing = !f.ended_ms && (open || service_affected_now);
  f.rolling_back = f.ongoing && i.status == "rolling_back";
  return f;
}

std::string state_of(const ServiceFacts& s) {
  if (s.maintenance_until_ms) return "maintenance";
  if (!s.watcher_healthy) return "unknown";  // lastgood's own reach is broken: nothing is blamed on the service
  if (s.firing_severity == "P0") return "outage";
  if (!s.firing_severity.empty()) return "degraded";
  if (!s.judged) return "unknown";
  return "operational";
}

json to_json(const Facts& f) {
  json services = json::array();
  std::vector<std::string> down, degraded;
  bool maintenance = false, unknown = false;
  for (const auto& s : f.services) {
    const std::string state = state_of(s);
    json x{{"name", s.public_name}, {"status", state}};
    if (auto m = service_message(s, state, f.now_ms); !m.empty()) x["message"] = m;
    services.push_back(std::move(x));
    if (state == "outage") down.push_back(s.public_name);
    else if (state == "degraded") degraded.push_back(s.public_name);
    else if (state == "maintenance") maintenance = true;
    else if (state == "unknown") unknown = true;
  }
  std::string overall = "operational", summary = "All services are operational";
  if (!down.empty()) {
    overall = "outage";
    summary = down.size() == 1 ? down[0] + " is down" : std::to_string(down.size()) + " services are down";
  } else if (!degraded.empty()) {
    overall = "degraded";
    summary = degraded.size() == 1 ? degraded[0] + " is degraded" : std::to_string(degraded.size()) + " services are degraded";
  } else if (maintenance) {
    overall = "maintenance";
    summary = "Maintenance in progress";
  } else if (unknown) {
    overall = "unknown";
    summary = "The status of some services is not known right now";
  }
  if (f.services.empty()) summary = "No services are listed";

  std::vector<IncidentFacts> incidents;
  for (const auto& i : f.incidents)
    if (i.ongoing || i.started_ms >= f.now_ms - f.history_ms) incidents.push_back(i);
  std::stable_sort(incidents.begin(), incidents.end(), [](const IncidentFacts& a, const IncidentFacts& b) {
    if (a.ongoing != b.ongoing) return a.ongoing;
    return a.started_ms > b.started_ms;
  });
  json inc = json::array();
  for (const auto& i : incidents) {
    const Impact im = impact_of(i.severity);
    inc.push_back({{"service", i.public_name},
                   {"impact", im.code},
                   {"title", std::string(im.title) + " of " + i.public_name},
                   {"started_at", iso(i.started_ms)},
                   {"ended_at", i.ended_ms ? json(iso(*i.ended_ms)) : json()},
                   {"ongoing", i.ongoing},
                   {"text", incident_text(i, f.now_ms)}});
  }
  json maint = json::array();
  for (const auto& m : f.maintenance) {
    if (m.end_ms <= f.now_ms || m.public_names.empty()) continue;
    const bool active = m.start_ms <= f.now_ms;
    const std::string who = joined(m.public_names);
    maint.push_back({{"services", m.public_names},
                     {"start", iso(m.start_ms)},
                     {"end", iso(m.end_ms)},
                     {"active", active},
                     {"text", active ? "Maintenance of " + who + " is in progress until " + moment(m.end_ms, f.now_ms) + "."
                                     : "Scheduled maintenance of " + who + " " + range(m.start_ms, m.end_ms) + "."}});
  }
  return {{"title", f.title},
          {"updated_at", iso(f.now_ms)},
          {"status", overall},
          {"summary", summary},
          {"services", services},
          {"incidents", inc},
          {"history_days", f.history_ms / kDay},
          {"maintenance", maint}};
}

std::string to_html(const json& st, long long now_ms) {
  const std::string title = escape(st.value("title", std::string("Status")));
  const std::string overall = st.value("status", std::string("unknown"));
  std::string h;
  h.reserve(4096);
  h += "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">";
  h += "<meta http-equiv=\"refresh\" content=\"60\"><title>" + title + "</title><link rel=\"stylesheet\" href=\"status.css\"></head>\n<body><main>\n";
  h += "<h1>" + title + "</h1>\n";
  h += "<p id=\"summary\" class=\"banner s-" + escape(overall) + "\">" + escape(st.value("summary", std::string())) + "</p>\n";
  h += "<section><h2>Services</h2><ul class=\"services\">\n";
  for (const auto& s : st["services"]) {
    const std::string state = s.value("status", std::string("unknown"));
    h += "<li class=\"service\"><span class=\"name\">" + escape(s.value("name", std::string())) + "</span><span class=\"state s-" + escape(state) + "\">" +
         state_label(state) + "</span>";
    if (s.contains("message")) h += "<p class=\"msg\">" + escape(s.value("message", std::string())) + "</p>";
    h += "</li>\n";
  }
  h += "</ul></section>\n";
  if (!st["maintenance"].empty()) {
    h += "<section><h2>Maintenance</h2><ul class=\"maintenance\">\n";
    for (const auto& m : st["maintenance"]) h += "<li>" + escape(m.value("text", std::string())) + "</li>\n";
    h += "</ul></section>\n";
  }
  const std::string days = std::to_string(st.value("history_days", 30));
  h += "<section><h2>Incidents in the last " + days + " days</h2>\n";
  if (st["incidents"].empty()) {
    h += "<p class=\"none\">No incidents in the last " + days + " days.</p>\n";
  } else {
    h += "<ul class=\"incidents\">\n";
    for (const auto& i : st["incidents"]) {
      const bool ongoing = i.value("ongoing", false);
      h += std::string("<li class=\"incident") + (ongoing ? " ongoing" : "") + "\"><h3>" + escape(i.value("title", std::string())) +
           (ongoing ? " <span class=\"tag\">ongoing</span>" : " <span class=\"tag resolved\">resolved</span>") + "</h3><p>" +
           escape(i.value("text", std::string())) + "</p></li>\n";
    }
    h += "</ul>\n";
  }
  h += "</section>\n<footer>Updated " + day_of(now_ms) + ", " + time_of(now_ms) + " UTC. This page refreshes every minute.</footer>\n";
  h += "</main></body></html>\n";
  return h;
}

const std::string& css() {
  static const std::string kCss = R"CSS(body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:760px;margin:0 auto;padding:24px 16px}
h1{font-size:26px;margin:0 0 16px}
h2{font-size:18px;margin:0 0 10px}
h3{font-size:16px;margin:0 0 4px}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;margin:0 0 16px;padding:14px 18px}
ul{list-style:none;margin:0;padding:0}
li{padding:8px 0;border-bottom:1px solid #eef0f3}
li:last-child{border-bottom:0}
.service{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:center}
.service .msg{flex-basis:100%;margin:2px 0 0;color:#4a5263;font-size:14px}
.name{font-weight:600}
.state{font-weight:600}
.banner{border-radius:8px;padding:14px 18px;color:#fff;font-weight:600;font-size:18px;margin:0 0 16px}
.banner.s-operational{background:#1a7f37}.banner.s-degraded{background:#9a6700}.banner.s-outage{background:#c62828}
.banner.s-maintenance{background:#1f5fbf}.banner.s-unknown{background:#5c6370}
.state.s-operational{color:#1a7f37}.state.s-degraded{color:#9a6700}.state.s-outage{color:#c62828}
.state.s-maintenance{color:#1f5fbf}.state.s-unknown{color:#5c6370}
.incident p{margin:0;color:#30384a}
.tag{font-size:12px;font-weight:600;border-radius:10px;padding:1px 8px;background:#c62828;color:#fff;vertical-align:middle}
.tag.resolved{background:#dde1e7;color:#30384a}
.none{color:#4a5263;margin:0}
footer{color:#5c6370;font-size:13px;text-align:center}
)CSS";
  return kCss;
}

}  // namespace lastgood::watchdog::status_page
