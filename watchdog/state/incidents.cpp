#include "watchdog/state/incidents.hpp"

#include "watchdog/json_text.hpp"
#include "watchdog/state/ledger.hpp"

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace lastgood::watchdog {

using nlohmann::json;

std::string iso8601(long long ms) {
  const std::time_t secs = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  const int milli = static_cast<int>(ms - static_cast<long long>(secs) * 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                tm.tm_sec, milli);
  return buf;
}

namespace {

constexpr size_t kKeep = 500;

std::string str(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key)) return "";
  const auto& v = j[key];
  return v.is_string() ? v.get<std::string>() : v.is_null() ? "" : json_text(v);
}

std::string describe_evidence(const json& ev) {
  if (!ev.is_object()) return "";
  std::ostringstream o;
  o << str(ev, "measure");
  if (ev.contains("value")) o << " = " << json_text(ev["value"]);
  if (ev.contains("threshold")) o << " (threshold " << json_text(ev["threshold"]) << ")";
  if (ev.contains("samples")) o << " over " << json_text(ev["samples"]) << " samples";
  if (!str(ev, "probe").empty()) o << ", probe " << str(ev, "probe");
  if (!str(ev, "detail").empty()) o << ": " << str(ev, "detail");
  return o.str();
}

long long review_hours(const std::string& severity) { return severity == "P0" ? 24 : 48; }

// The follow-up review's questions: one list for the JSON and the Markdown.
std::vector<std::string> review_questions(const Incident& i) {
  return {"What changed in " + i.release_from + ", and why did it break " + i.trigger + "?",
          "Why did the checks before release not catch it?", "Was detection fast enough, and was the rollback the right call?",
          "What will stop it happening again (owners and dates)?"};
}

}  // namespace

Incident* Incidents::get(const std::string& id) {
  if (id.empty()) return nullptr;
  for (auto& i : incidents_)
    if (i.id == id || i.action_id == id) return &i;
  return nullptr;
}

const Incident* Incidents::find(const std::string& id) const { return const_cast<Incidents*>(this)->get(id); }

Incident* Incidents::open_incident_of(const std::string& service) {
  auto it = open_.find(service);
  return it == open_.end() ? nullptr : get(it->second);
}

std::optional<std::string> Incidents::opened(Incident inc) {
  open_[inc.service] = inc.id;
  incidents_.push_back(std::move(inc));
  while (incidents_.size() > kKeep) incidents_.pop_front();
  return incidents_.back().id;
}

std::optional<std::string> Incidents::open_for(const std::string& service) const {
  auto it = open_.find(service);
  if (it == open_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> Incidents::observe(const LedgerEntry& e) {
  const auto type = parse_event(e.type);
  return type ? observe(*type, e.service, e.ts_ms, e.data) : std::nullopt;
}

// An incident opens with its action: action_started here, or an action this replica inherited
// from another that stopped during it (ha: recorded with action_reconciled, `inherited`).
std::optional<std::string> Incidents::open_incident(const std::string& service, long long at, const json& d, const std::string& started) {
  const std::string action_id = str(d, "action_id");
  if (action_id.empty()) return std::nullopt;
  const std::string via = str(d, "via");
  // The service's open incident (its breach, its proposal) takes the action, unless it has one
  // already that did something.
  Incident* inc = open_incident_of(service);
  if (inc && !inc->action_id.empty() && inc->status != "refused") inc = nullptr;
  if (inc) {
    inc->action_id = action_id;
    inc->via = via;
    inc->kind = str(d, "kind");
    inc->release_from = str(d, "from");
    inc->release_to = str(d, "to");
    if (inc->trigger.empty()) inc->trigger = str(d, "trigger");
    inc->status = "rolling_back";
    inc->action = {{"kind", inc->kind}, {"steps", d.value("steps", json::array())}, {"started_at", at}, {"via", via}};
    if (via.rfind("proposal ", 0) == 0 && inc->proposal_id != via.substr(9)) {  // a proposal made before this incident
      inc->proposal_id = via.substr(9);
      if (auto p = proposals_.find(inc->proposal_id); p != proposals_.end())
        for (const auto& v : p->second.second)
          inc->approvals.push_back({{"approver", str(v, "approver")}, {"role", str(v, "role")}, {"approve", v.value("approve", true)},
                                    {"comment", str(v, "comment")}, {"at", v.value("at", 0LL)}});
    }
    if (inc->severity.empty()) inc->severity = "P1";
    inc->review_due_ms = at + review_hours(inc->severity) * 3600 * 1000;
    inc->timeline.push_back({at, "action_started", inc->kind + ": " + inc->release_from + " -> " + inc->release_to + " (" + via + ")" + started});
    inc->last_ms = at;
    return inc->id;
  }
  Incident fresh;
  fresh.id = action_id;
  fresh.action_id = action_id;
  fresh.service = service;
  fresh.trigger = str(d, "trigger");
  fresh.via = via;
  fresh.kind = str(d, "kind");
  fresh.release_from = str(d, "from");
  fresh.release_to = str(d, "to");
  fresh.opened_ms = at;
  fresh.last_ms = at;
  fresh.action = {{"kind", fresh.kind}, {"steps", d.value("steps", json::array())}, {"started_at", at}, {"via", via}};
  if (auto b = breaches_[service].find(fresh.trigger); b != breaches_[service].end()) {
    const auto& t = b->second;
    fresh.breach = {{"at", t.at_ms}, {"severity", str(t.data, "severity")}, {"evidence", t.data.value("evidence", json::object())}};
    fresh.severity = str(t.data, "severity");
    fresh.opened_ms = t.at_ms;
    fresh.timeline.push_back({t.at_ms, "breach",
                              "trigger " + fresh.trigger + " (" + fresh.severity + ") fired: " + describe_evidence(t.data.value("evidence", json::object()))});
  }
  if (auto x = decisions_[service].find(fresh.trigger); x != decisions_[service].end()) {
    fresh.decision = x->second.data;
    fresh.decision["at"] = x->second.at_ms;
    if (fresh.severity.empty()) fresh.severity = str(x->second.data, "severity");
    if (fresh.breach.is_null()) {
      fresh.opened_ms = x->second.at_ms;
      fresh.breach = {{"at", x->second.at_ms}, {"severity", fresh.severity}, {"evidence", x->second.data.value("evidence", json::object())}};
    }
    fresh.timeline.push_back({x->second.at_ms, "decision", str(x->second.data, "kind") + ": " + str(x->second.data, "reason")});
  }
  if (via.rfind("proposal ", 0) == 0) {
    fresh.proposal_id = via.substr(9);
    if (auto p = proposals_.find(fresh.proposal_id); p != proposals_.end()) {
      fresh.timeline.push_back({p->second.first.at_ms, "proposed",
                                "proposal " + fresh.proposal_id + " needs a quorum of " + std::to_string(p->second.first.data.value("quorum", 1))});
      for (const auto& v : p->second.second) {
        const bool yes = v.value("approve", true);
        fresh.approvals.push_back({{"approver", str(v, "approver")}, {"role", str(v, "role")}, {"approve", yes},
                                   {"comment", str(v, "comment")}, {"at", v.value("at", 0LL)}});
        fresh.timeline.push_back({v.value("at", 0LL), yes ? "approval" : "rejection",
                                  str(v, "approver") + " (" + str(v, "role") + ")" + (str(v, "comment").empty() ? "" : ": " + str(v, "comment"))});
      }
    }
  }
  if (fresh.severity.empty()) fresh.severity = "P1";
  fresh.review_due_ms = at + review_hours(fresh.severity) * 3600 * 1000;
  fresh.timeline.push_back({at, "action_started", fresh.kind + ": " + fresh.release_from + " -> " + fresh.release_to + " (" + via + ")" + started});
  return opened(std::move(fresh));
}

std::optional<std::string> Incidents::observe(Event type, const std::string& service, long long at, const json& d) {
  if (type == Event::transition) {
    const std::string trigger = str(d, "trigger"), to = str(d, "to"), from = str(d, "from");
    Incident* inc = open_incident_of(service);
    if (to == "firing") {
      breaches_[service][trigger] = {at, d};
      const json ev = d.value("evidence", json::object());
      // A breach long after its open incident's last entry (that never came to an action) is another.
      if (inc && inc->action_id.empty() && at - inc->last_ms > kStaleMs) inc = nullptr;
      if (!inc) {  // the breach opens the incident
        Incident fresh;
        fresh.id = "i" + std::to_string(at) + "-" + service;
        fresh.service = service;
        fresh.trigger = trigger;
        fresh.severity = str(d, "severity");
        fresh.status = "firing";
        fresh.opened_ms = at;
        fresh.last_ms = at;
        fresh.breach = {{"at", at}, {"severity", fresh.severity}, {"evidence", ev}};
        fresh.review_due_ms = at + review_hours(fresh.severity) * 3600 * 1000;
        fresh.timeline.push_back({at, "breach", "trigger " + trigger + " (" + fresh.severity + ") fired: " + describe_evidence(ev)});
        return opened(std::move(fresh));
      }
      inc->last_ms = at;
      // The same trigger firing again before anything was decided (its evidence restarted with a
      // release change): the breach's evidence is updated, not repeated.
      if (!inc->timeline.empty() && inc->timeline.back().event == "breach" && inc->trigger == trigger && inc->action_id.empty()) {
        inc->breach["evidence"] = ev;
        inc->timeline.back().detail = "trigger " + trigger + " (" + str(d, "severity") + ") fired: " + describe_evidence(ev);
      } else {
        inc->timeline.push_back({at, "breach", "trigger " + trigger + " (" + str(d, "severity") + ") fired: " + describe_evidence(ev)});
      }
      return inc->id;
    }
    // Its trigger back to ok from firing, with no rollback: the incident ends on its own.
    if (inc && inc->action_id.empty() && inc->trigger == trigger && from == "firing" && to == "ok") {
      inc->status = "recovered";
      inc->last_ms = at;
      inc->timeline.push_back({at, "recovered", "trigger " + trigger + " back to ok without a rollback"});
      open_.erase(service);
      return inc->id;
    }
    return std::nullopt;
  }
  if (type == Event::decision) {
    const std::string kind = str(d, "kind");
    if (d.value("shadow", false)) return std::nullopt;
    if (kind == "execute" || kind == "propose") decisions_[service][str(d, "trigger")] = {at, d};
    Incident* inc = open_incident_of(service);
    if (!inc || !inc->action_id.empty()) return std::nullopt;
    const std::string line = kind + ": " + str(d, "reason");
    for (auto it = inc->timeline.rbegin(); it != inc->timeline.rend(); ++it)
      if (it->event == "decision") {
        if (it->detail == line) return std::nullopt;  // the same hold again (a retry): once in the record
        break;
      }
    inc->timeline.push_back({at, "decision", line});
    inc->last_ms = at;
    if (inc->decision.is_null() || kind == "execute" || kind == "propose" || str(inc->decision, "kind") == "hold") {
      inc->decision = d;
      inc->decision["at"] = at;
    }
    if (inc->release_from.empty()) inc->release_from = str(d, "release_from");
    if (inc->severity.empty()) inc->severity = str(d, "severity");
    if (kind == "hold") inc->status = "held";
    else if (kind == "alert") inc->status = "alert_only";
    return inc->id;
  }
  if (type == Event::rollback_requested) {  // a person asked: the record opens here if no breach did
    Incident* inc = open_incident_of(service);
    const std::string line = str(d, "by") + " asked (" + str(d, "origin") + "): " + str(d, "reason");
    if (inc && inc->action_id.empty()) {
      inc->timeline.push_back({at, "requested", line});
      inc->last_ms = at;
      return inc->id;
    }
    Incident fresh;
    fresh.id = "i" + std::to_string(at) + "-" + service;
    fresh.service = service;
    fresh.trigger = str(d, "origin");
    fresh.severity = str(d, "severity");
    fresh.status = "requested";
    fresh.release_from = str(d, "from");
    fresh.opened_ms = at;
    fresh.last_ms = at;
    fresh.review_due_ms = at + review_hours(fresh.severity) * 3600 * 1000;
    fresh.timeline.push_back({at, "requested", line});
    return opened(std::move(fresh));
  }
  if (type == Event::proposal_created) {
    const std::string pid = str(d, "id");
    proposals_[pid] = {{at, d}, json::array()};
    if (proposals_.size() > 2000) proposals_.erase(proposals_.begin());  // ids sort by creation time
    Incident* inc = open_incident_of(service);
    if (!inc || !inc->action_id.empty()) return std::nullopt;
    inc->proposal_id = pid;
    inc->status = "proposed";
    inc->last_ms = at;
    proposal_of_[pid] = inc->id;
    if (proposal_of_.size() > 2000) proposal_of_.erase(proposal_of_.begin());
    inc->timeline.push_back({at, "proposed", "proposal " + pid + " needs a quorum of " + std::to_string(d.value("quorum", 1))});
    return inc->id;
  }
  auto proposal_incident = [&](const std::string& pid) -> Incident* {
    auto it = proposal_of_.find(pid);
    Incident* inc = it == proposal_of_.end() ? nullptr : get(it->second);
    return inc && inc->proposal_id == pid ? inc : nullptr;
  };
  if (type == Event::proposal_vote) {
    auto it = proposals_.find(str(d, "id"));
    if (it != proposals_.end()) {
      json v = d;
      v["at"] = at;
      it->second.second.push_back(v);
    }
    Incident* inc = proposal_incident(str(d, "id"));
    if (!inc) return std::nullopt;
    const bool yes = d.value("approve", true);
    inc->approvals.push_back({{"approver", str(d, "approver")}, {"role", str(d, "role")}, {"approve", yes}, {"comment", str(d, "comment")}, {"at", at}});
    inc->timeline.push_back({at, yes ? "approval" : "rejection", str(d, "approver") + " (" + str(d, "role") + ")" + (str(d, "comment").empty() ? "" : ": " + str(d, "comment"))});
    inc->last_ms = at;
    return inc->id;
  }
  if (type == Event::proposal_expired || type == Event::proposal_state) {
    Incident* inc = proposal_incident(str(d, "id"));
    const std::string state = type == Event::proposal_expired ? "expired" : str(d, "state");
    if (!inc || !inc->action_id.empty() || (state != "expired" && state != "rejected" && state != "stale")) return std::nullopt;
    inc->status = state;
    inc->last_ms = at;
    inc->timeline.push_back({at, state, state == "expired" ? "no approval in time: nothing was done"
                                        : state == "rejected" ? "rejected: nothing will be done"
                                                              : "the live release changed: nothing will be done"});
    return inc->id;
  }
  if (type == Event::action_started) return open_incident(service, at, d, "");
  if (type == Event::action_finished || type == Event::action_reconciled) {
    Incident* inc = get(str(d, "action_id"));
    const bool inherited = type == Event::action_reconciled && d.contains("inherited") && d["inherited"].is_object();
    if (!inc && inherited) {
      const json& in = d["inherited"];
      const long long started_at = in.value("at_ms", at);
      if (open_incident(service, started_at, in, ", by replica " + str(in, "replica") + ", which stopped during it")) inc = get(str(d, "action_id"));
    }
    if (!inc) return std::nullopt;
    if (type == Event::action_finished) {
      const bool ok = d.value("ok", false);
      inc->action["finished_at"] = at;
      inc->action["ok"] = ok;
      inc->action["output"] = str(d, "output");
      inc->action["error"] = str(d, "error");
      if (d.contains("seconds")) inc->action["seconds"] = d["seconds"];
      const std::string refused_live = str(d, "refused_live");
      inc->status = ok ? "verifying" : !refused_live.empty() ? "refused" : "failed";
      inc->timeline.push_back({at, "action_finished",
                               ok                      ? "switched to " + inc->release_to
                               : !refused_live.empty() ? "refused: the live release was " + refused_live + ", not " + inc->release_from + "; nothing was changed"
                                                       : "failed: " + str(d, "error")});
    } else {
      const bool switched = d.value("switched", false);
      inc->action["reconciled_at"] = at;
      inc->action["ok"] = switched;
      inc->status = switched ? "verifying" : "interrupted";
      const std::string who = inherited ? "replica " + str(d["inherited"], "replica") + " stopped during the action and replica " +
                                              str(d, "reconciled_by") + " took it over"
                                        : "lastgood restarted during the action";
      inc->timeline.push_back({at, "action_reconciled", who + "; the live release " + (switched ? "is the target: verifying" : "is not the target: " + str(d, "live"))});
    }
    return inc->id;
  }
  if (type == Event::verification) {
    Incident* inc = get(str(d, "action_id"));
    if (!inc) return std::nullopt;
    const bool ok = str(d, "outcome") == "verified";
    inc->outcome["verification"] = {{"at", at}, {"outcome", str(d, "outcome")}, {"healthy_samples", d.value("healthy_samples", 0)}};
    if (d.contains("conditions")) inc->outcome["verification"]["conditions"] = d["conditions"];
    if (d.contains("reason")) inc->outcome["verification"]["reason"] = d["reason"];
    // Older entries carry no reason: the count is all they say.
    const std::string said = str(d, "reason");
    inc->timeline.push_back({at, "verification", !said.empty() ? said + " (on " + inc->release_to + ")"
                                                 : ok ? "recovered on " + inc->release_to + " (" + std::to_string(d.value("healthy_samples", 0)) +
                                                            " healthy results in a row)"
                                                      : "not recovered in time on " + inc->release_to});
    if (ok) {
      inc->status = "verified";
      open_.erase(service);
    }
    return inc->id;
  }
  if (type == Event::escalated) {
    std::string id = str(d, "action_id");
    if (id.empty())
      if (auto o = open_for(service)) id = *o;
    Incident* inc = get(id);
    if (!inc) return std::nullopt;
    inc->status = "escalated";
    inc->outcome["escalation"] = {{"at", at}, {"reason", str(d, "reason")}};
    inc->timeline.push_back({at, "escalated", str(d, "reason")});
    open_.erase(service);
    return inc->id;
  }
  if (type == Event::cleared) {
    // The escalation a person clears belongs to the service's latest escalated incident.
    for (auto it = incidents_.rbegin(); it != incidents_.rend(); ++it)
      if (it->service == service) {
        if (it->status != "escalated") return std::nullopt;
        it->outcome["cleared"] = {{"at", at}, {"by", str(d, "by")}};
        it->timeline.push_back({at, "cleared", "escalation cleared by " + str(d, "by")});
        return it->id;
      }
    return std::nullopt;
  }
  return std::nullopt;
}

json Incidents::to_json(const Incident& i) {
  json tl = json::array();
  for (const auto& e : i.timeline) tl.push_back({{"at", e.at_ms}, {"at_iso", iso8601(e.at_ms)}, {"event", e.event}, {"detail", e.detail}});
  return {{"id", i.id},
          {"action_id", i.action_id.empty() ? json() : json(i.action_id)},
          {"service", i.service},
          {"status", i.status},
          {"severity", i.severity},
          {"trigger", i.trigger},
          {"opened_at", i.opened_ms},
          {"opened_at_iso", iso8601(i.opened_ms)},
          {"releases", {{"bad", i.release_from}, {"restored", i.release_to}}},
          {"timeline", tl},
          {"evidence", i.breach.is_object() ? i.breach.value("evidence", json::object()) : json::object()},
          {"breach", i.breach},
          {"decision", i.decision},
          {"proposal_id", i.proposal_id.empty() ? json() : json(i.proposal_id)},
          {"approvals", i.approvals},
          {"action", i.action},
          {"outcome", i.outcome.is_null() ? json::object() : i.outcome},
          {"review",
           {{"due_by", i.review_due_ms},
            {"due_by_iso", iso8601(i.review_due_ms)},
            {"within_hours", review_hours(i.severity)},
            {"status", "open"},
            {"questions", review_questions(i)}}}};
}

std::string Incidents::to_markdown(const Incident& i) {
  std::ostringstream o;
  auto code = [&](const std::string& text) {
    std::string fence = "```";
    while (text.find(fence) != std::string::npos) fence += "`";
    o << fence << "\n" << text << (text.empty() || text.back() != '\n' ? "\n" : "") << fence << "\n";
  };
  auto cell = [](std::string s) {
    for (auto& c : s)
      if (c == '|' || c == '\n') c = c == '|' ? '/' : ' ';
    return s;
  };
  if (!i.action_id.empty())
    o << "# Incident " << i.id << ": " << i.service << " rolled back from " << i.release_from << " to " << i.release_to << "\n\n";
  else
    o << "# Incident " << i.id << ": " << i.service << ", " << i.trigger << " (" << i.severity << "): " << i.status << ", no rollback\n\n";
  o << "## Summary\n\n";
  o << "- Status: **" << i.status << "**\n";
  o << "- Service: " << i.service << "\n";
  o << "- Severity: " << i.severity << "\n";
  o << "- Trigger: " << i.trigger << "\n";
  o << "- Opened: " << iso8601(i.opened_ms) << "\n";
  if (!i.action_id.empty()) o << "- Rolled back by: " << (i.via == "auto" ? "lastgood, automatically (policy allows it)" : i.via) << " (action " << i.action_id << ")\n";
  o << "- Root-cause review due by: **" << iso8601(i.review_due_ms) << "**\n\n";
  o << "## Timeline\n\n| Time (UTC) | Event | Detail |\n|---|---|---|\n";
  for (const auto& e : i.timeline) o << "| " << iso8601(e.at_ms) << " | " << e.event << " | " << cell(e.detail) << " |\n";
  o << "\n## Evidence\n\n";
  if (i.breach.is_object()) {
    code(json_text(i.breach.value("evidence", json::object()), 2));
  } else {
    o << "No breach on record for this trigger (the rollback was started by a person or after a restart).\n";
  }
  o << "\n## Releases\n\n- Bad (rolled back from): " << i.release_from << "\n- Restored (rolled back to): " << i.release_to << "\n";
  if (i.decision.is_object() && i.decision.contains("reason")) o << "- Decision: " << str(i.decision, "kind") << ": " << str(i.decision, "reason") << "\n";
  o << "\n## Approvals\n\n";
  if (i.proposal_id.empty() && i.action_id.empty()) {
    o << "No proposal was made.\n";
  } else if (i.proposal_id.empty()) {
    o << "None needed: the policy allows lastgood to roll this back on its own.\n";
  } else {
    o << "Proposal " << i.proposal_id << ".\n\n";
    if (i.approvals.empty()) o << "No votes on record.\n";
    for (const auto& a : i.approvals)
      o << "- " << iso8601(a.value("at", 0LL)) << " " << str(a, "approver") << " (" << str(a, "role") << ") "
        << (a.value("approve", true) ? "approved" : "rejected") << (str(a, "comment").empty() ? "" : ": " + str(a, "comment")) << "\n";
  }
  o << "\n## Action\n\n";
  if (i.action_id.empty() || !i.action.is_object()) {
    o << "No rollback was carried out (" << i.status << ").\n";
  } else {
    o << "- Kind: " << i.kind << "\n- Started: " << iso8601(i.action.value("started_at", 0LL)) << "\n";
    if (i.action.contains("finished_at")) o << "- Finished: " << iso8601(i.action.value("finished_at", 0LL)) << "\n";
    if (i.action.contains("ok")) o << "- Result: " << (i.action.value("ok", false) ? "ok" : "failed") << "\n";
    if (!str(i.action, "error").empty()) o << "- Error: " << str(i.action, "error") << "\n";
    o << "\nSteps:\n\n";
    code(json_text(i.action.value("steps", json::array()), 2));
    o << "\nOutput:\n\n";
    code(str(i.action, "output"));
  }
  o << "\n## Verification and escalation\n\n";
  if (i.outcome.is_object() && i.outcome.contains("verification")) {
    const auto& v = i.outcome["verification"];
    o << "- Verification: " << str(v, "outcome") << " at " << iso8601(v.value("at", 0LL)) << " (" << v.value("healthy_samples", 0)
      << " healthy results in a row)\n";
    if (!str(v, "reason").empty()) o << "  - " << str(v, "reason") << "\n";
  }
  if (i.outcome.is_object() && i.outcome.contains("escalation"))
    o << "- Escalated at " << iso8601(i.outcome["escalation"].value("at", 0LL)) << ": " << str(i.outcome["escalation"], "reason") << "\n";
  if (i.outcome.is_object() && i.outcome.contains("cleared"))
    o << "- Cleared at " << iso8601(i.outcome["cleared"].value("at", 0LL)) << " by " << str(i.outcome["cleared"], "by") << "\n";
  if ((!i.outcome.is_object() || i.outcome.empty()) && !i.action_id.empty()) o << "Pending: recovery is being verified.\n";
  if ((!i.outcome.is_object() || i.outcome.empty()) && i.action_id.empty()) o << "No rollback to verify.\n";
  o << "\n## Follow-up review\n\n";
  o << "Root-cause analysis due by **" << iso8601(i.review_due_ms) << "** (within " << review_hours(i.severity) << " h of the rollback for "
    << i.severity << ").\n\n";
  for (const auto& q : review_questions(i)) o << "- [ ] " << q << "\n";
  o << "\n";
  o << "Owner: \n\nFindings: \n";
  return o.str();
}

json Incidents::list() const {
  json out = json::array();
  for (auto it = incidents_.rbegin(); it != incidents_.rend(); ++it)
    out.push_back({{"id", it->id},
                   {"action_id", it->action_id.empty() ? json() : json(it->action_id)},
                   {"service", it->service},
                   {"status", it->status},
                   {"severity", it->severity},
                   {"trigger", it->trigger},
                   {"opened_at", it->opened_ms},
                   {"release_from", it->release_from},
                   {"release_to", it->release_to},
                   {"review_due_by", it->review_due_ms}});
  return out;
}

std::string Incidents::write(const std::string& id) const {
  if (dir_.empty()) return "";
  const Incident* found = find(id);
  if (!found) return "no incident " + id;
  const std::string& name = found->id;  // the files are the incident's, whichever id found it
  const Incident* inc = found;
  std::error_code ec;
  if (auto err = make_private_dir(dir_); !err.empty()) return err;
  auto put = [&](const std::string& name, const std::string& text) -> std::string {
    const std::string path = dir_ + "/" + name, tmp = path + ".tmp";
    if (auto err = write_private(tmp, text); !err.empty()) {
      std::filesystem::remove(tmp, ec);
      return err;
    }
    std::filesystem::rename(tmp, path, ec);
    return ec ? "cannot rename " + tmp + ": " + ec.message() : "";
  };
  if (auto e = put(name + ".json", json_text(to_json(*inc), 2) + "\n"); !e.empty()) return e;
  // The follow-up review section is for people to fill in: a rewrite keeps what they wrote.
  std::string md = to_markdown(*inc);
  const std::string marker = "\n## Follow-up review\n";
  std::ifstream old(dir_ + "/" + name + ".md", std::ios::binary);
  if (old) {
    const std::string before((std::istreambuf_iterator<char>(old)), std::istreambuf_iterator<char>());
    const auto at_old = before.find(marker), at_new = md.find(marker);
    if (at_old != std::string::npos && at_new != std::string::npos) md = md.substr(0, at_new) + before.substr(at_old);
  }
  return put(name + ".md", md);
}

int Incidents::write_changed() const {
  if (dir_.empty()) return 0;
  int n = 0;
  for (const auto& i : incidents_) {
    std::ifstream f(dir_ + "/" + i.id + ".json", std::ios::binary);
    std::error_code ec;
    if (f && std::filesystem::exists(dir_ + "/" + i.id + ".md", ec)) {
      const auto on_disk = json::parse(f, nullptr, false);
      if (!on_disk.is_discarded() && on_disk.value("status", "") == i.status && on_disk.contains("timeline") &&
          on_disk["timeline"].size() == i.timeline.size())
        continue;
    }
    if (write(i.id).empty()) ++n;
  }
  return n;
}

// ---- snapshot -----------------------------------------------------------------------------

namespace {
json save_pending(long long at, const json& data) { return json{{"at", at}, {"data", data}}; }
template <typename T>
T need(const json& j, const char* key, const char* what) {
  if (!j.is_object() || !j.contains(key)) throw std::runtime_error(std::string("incidents: ") + what + " has no \"" + key + "\"");
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    throw std::runtime_error(std::string("incidents: ") + what + "." + key + " has the wrong type");
  }
}
}  // namespace

json Incidents::save() const {
  json records = json::array();
  for (const auto& i : incidents_) {
    json tl = json::array();
    for (const auto& e : i.timeline) tl.push_back(json::array({e.at_ms, e.event, e.detail}));
    records.push_back({{"id", i.id}, {"action_id", i.action_id}, {"last_ms", i.last_ms}, {"service", i.service}, {"trigger", i.trigger},
                       {"severity", i.severity}, {"via", i.via}, {"proposal_id", i.proposal_id}, {"kind", i.kind},
                       {"release_from", i.release_from}, {"release_to", i.release_to}, {"status", i.status}, {"opened_ms", i.opened_ms},
                       {"review_due_ms", i.review_due_ms}, {"breach", i.breach}, {"decision", i.decision}, {"approvals", i.approvals},
                       {"action", i.action}, {"outcome", i.outcome}, {"timeline", std::move(tl)}});
  }
  auto nested = [](const std::map<std::string, std::map<std::string, Pending>>& m) {
    json out = json::object();
    for (const auto& [svc, per] : m)
      for (const auto& [trig, p] : per) out[svc][trig] = save_pending(p.at_ms, p.data);
    return out;
  };
  json props = json::object();
  for (const auto& [id, pv] : proposals_) props[id] = {{"created", save_pending(pv.first.at_ms, pv.first.data)}, {"votes", pv.second}};
  return {{"records", std::move(records)}, {"breaches", nested(breaches_)}, {"decisions", nested(decisions_)}, {"proposals", std::move(props)},
          {"open", open_}, {"proposal_of", proposal_of_}};
}

void Incidents::restore(const json& saved) {
  if (!saved.is_object()) throw std::runtime_error("incidents: expected an object");
  std::deque<Incident> records;
  for (const auto& r : need<json>(saved, "records", "the snapshot")) {
    Incident i;
    i.id = need<std::string>(r, "id", "a record");
    i.action_id = need<std::string>(r, "action_id", "a record");
    i.last_ms = need<long long>(r, "last_ms", "a record");
    i.service = need<std::string>(r, "service", "a record");
    i.trigger = need<std::string>(r, "trigger", "a record");
    i.severity = need<std::string>(r, "severity", "a record");
    i.via = need<std::string>(r, "via", "a record");
    i.proposal_id = need<std::string>(r, "proposal_id", "a record");
    i.kind = need<std::string>(r, "kind", "a record");
    i.release_from = need<std::string>(r, "release_from", "a record");
    i.release_to = need<std::string>(r, "release_to", "a record");
    i.status = need<std::string>(r, "status", "a record");
    i.opened_ms = need<long long>(r, "opened_ms", "a record");
    i.review_due_ms = need<long long>(r, "review_due_ms", "a record");
    i.breach = need<json>(r, "breach", "a record");
    i.decision = need<json>(r, "decision", "a record");
    i.approvals = need<json>(r, "approvals", "a record");
    i.action = need<json>(r, "action", "a record");
    i.outcome = need<json>(r, "outcome", "a record");
    for (const auto& e : need<json>(r, "timeline", "a record")) {
      if (!e.is_array() || e.size() != 3 || !e[0].is_number_integer() || !e[1].is_string() || !e[2].is_string())
        throw std::runtime_error("incidents: a timeline event is not [at, event, detail]");
      i.timeline.push_back({e[0].get<long long>(), e[1].get<std::string>(), e[2].get<std::string>()});
    }
    records.push_back(std::move(i));
  }
  auto nested = [](const json& j, const char* what) {
    std::map<std::string, std::map<std::string, Pending>> out;
    if (!j.is_object()) throw std::runtime_error(std::string("incidents: ") + what + " is not an object");
    for (const auto& [svc, per] : j.items()) {
      if (!per.is_object()) throw std::runtime_error(std::string("incidents: ") + what + " is not an object of objects");
      for (const auto& [trig, p] : per.items()) out[svc][trig] = Pending{need<long long>(p, "at", what), need<json>(p, "data", what)};
    }
    return out;
  };
  auto breaches = nested(need<json>(saved, "breaches", "the snapshot"), "breaches");
  auto decisions = nested(need<json>(saved, "decisions", "the snapshot"), "decisions");
  std::map<std::string, std::pair<Pending, json>> props;
  const json pj = need<json>(saved, "proposals", "the snapshot");
  if (!pj.is_object()) throw std::runtime_error("incidents: proposals is not an object");
  for (const auto& [id, p] : pj.items()) {
    const json c = need<json>(p, "created", "a proposal");
    props[id] = {Pending{need<long long>(c, "at", "a proposal"), need<json>(c, "data", "a proposal")}, need<json>(p, "votes", "a proposal")};
  }
  auto open = need<std::map<std::string, std::string>>(saved, "open", "the snapshot");
  auto proposal_of = need<std::map<std::string, std::string>>(saved, "proposal_of", "the snapshot");
  incidents_ = std::move(records);
  breaches_ = std::move(breaches);
  decisions_ = std::move(decisions);
  proposals_ = std::move(props);
  open_ = std::move(open);
  proposal_of_ = std::move(proposal_of);
}

}  // namespace lastgood::watchdog
