// People's requests (design.md, HTTP surface): a manual rollback, a release marked bad, silences.
// Each becomes what the policy would have made (a proposal under the same authority matrix,
// quorum, ledger, staleness and verification), with the person's name and reason on record.
#include <spdlog/spdlog.h>

#include "watchdog/pipeline/pipeline.hpp"
#include "watchdog/log_fields.hpp"

#include "watchdog/state/records.hpp"

namespace lastgood::watchdog {

using nlohmann::json;
using policy::DecisionKind;

namespace {
// The decision a person's request stands for (origin manual or mark_bad): the trigger and the
// evidence's measure are the origin, the evidence's detail the person's reason.
policy::Decision person_decision(const std::string& service, const std::string& origin, policy::Severity severity, const std::string& from,
                                 const std::string& to, const std::string& who, const std::string& reason, std::string why, policy::TimePoint at) {
  policy::Decision d;
  d.service = service;
  d.trigger = origin;
  d.severity = severity;
  d.kind = DecisionKind::propose;
  d.release_from = from;
  d.release_to = to;
  d.at = at;
  d.origin = origin;
  d.requested_by = who;
  d.reason = std::move(why);
  d.evidence.measure = origin == "manual" ? "manual" : "marked_bad";
  d.evidence.detail = reason.substr(0, 500);
  return d;
}

Request refused(Request::Status st, std::string why) {
  Request r;
  r.status = st;
  r.error = std::move(why);
  return r;
}
}  // namespace

void Pipeline::marked_bad(size_t si, const std::string& release, policy::BadMark mark) { svcs_[si]->policy->mark_bad(release, std::move(mark)); }

void Pipeline::silence(Event type, const LedgerEntry& e) { silences_.replay(type, e); }

// The proposal a person's request opens, and their approval of it.
Request Pipeline::open_person_proposal(size_t si, const config::Approver& who, policy::Decision d, const std::string& reason,
                                       const std::string& source, bool approve) {
  auto& s = *svcs_[si];
  const auto& name = s.name();
  if (const auto* p = proposals_.open_for(name, d.release_from)) {
    Request r = refused(Request::Status::refused, "proposal " + p->id + " to roll " + name + " back from " + d.release_from.value_or("?") + " is already " +
                                                      std::string(watchdog::name(p->state)) + ": approve it instead (POST /api/v1/proposals/" + p->id + "/approve)");
    r.proposal = p;
    return r;
  }
  if (proposals_.role_for(who, d.severity, clock_.now()).empty())
    return refused(Request::Status::forbidden, who.name + " holds no role allowed to decide on " + policy::to_string(d.severity) + " rollbacks");
  if (!recording_.record(Event::rollback_requested, name,
                         {{"origin", d.origin}, {"by", who.name}, {"source", source}, {"reason", reason.substr(0, 500)}, {"severity", policy::to_string(d.severity)},
                          {"from", d.release_from.value_or("")}, {"to", d.release_to.value_or("")}}))
    return refused(Request::Status::cannot_record, "lastgood cannot record now (" + recording_.error() + "): nothing was done; try again later");
  recording_.record(Event::decision, name, to_json(d));
  metrics_.decision(name, policy::to_string(d.kind));
  remember(d);
  logf::warn({.service = name, .release = d.release_to.value_or(""), .incident_id = incident_of(name)}, "{} {}: {} asks to roll back {} -> {}: {}", d.origin, name, who.name, d.release_from.value_or("?"), d.release_to.value_or("?"), reason);
  const Proposal* p = proposals_.create(d, s.cfg->rollback.approval_timeout);
  if (!p) return refused(Request::Status::cannot_record, "lastgood cannot record now (" + recording_.error() + "): nothing was done; try again later");
  const std::string id = p->id;
  json details = to_json(d);
  details["proposal_id"] = id;
  details["decision"] = "propose";
  notifier_.notify("proposed", name, details);
  Request r;
  r.proposal = proposals_.find(id);
  if (!approve) {
    r.body = {{"proposal", id}, {"state", "pending"}, {"approvals", 0}, {"quorum", r.proposal ? r.proposal->quorum : 1}};
    return r;
  }
  // The requester's approval counts toward the quorum (quorum 1: carried out at once).
  const VoteOutcome v = vote(id, &who, true, reason, source);
  r.proposal = proposals_.find(id);
  r.vote = v.status;
  r.body = {{"proposal", id}, {"state", r.proposal ? std::string(watchdog::name(r.proposal->state)) : "unknown"}};
  if (r.proposal) {
    r.body["approvals"] = r.proposal->approvals.size();
    r.body["quorum"] = r.proposal->quorum;
  }
  if (!v.error.empty()) r.body["note"] = v.error;
  return r;
}

Request Pipeline::request_rollback(size_t si, const config::Approver& who, std::optional<std::string> to, policy::Severity severity,
                                   const std::string& reason, const std::string& source, bool approve) {
  auto& s = *svcs_[si];
  const auto& name = s.name();
  if (!s.action) return refused(Request::Status::refused, "service " + name + " has no deployment that lastgood can roll back");
  if (!recording_.writable()) return refused(Request::Status::cannot_record, "lastgood cannot record now (" + recording_.error() + "): nothing was done");
  const auto& dep = s.policy->deployment();
  const auto* live = dep.live();
  if (!live) return refused(Request::Status::refused, "the live release of " + name + " is not known yet" + (s.observe_error.empty() ? "" : " (" + s.observe_error + ")"));
  if (!to) {
    const auto* t = dep.rollback_target();
    if (!t) return refused(Request::Status::refused, "no verified good release of " + name + " other than " + live->id + " is known: name one with \"to\"");
    to = t->id;
  }
  if (*to == live->id) return refused(Request::Status::refused, "release " + *to + " is live already");
  if (const auto* b = dep.bad(*to)) return refused(Request::Status::refused, "release " + *to + " was marked bad by " + b->by + ": " + b->reason);
  if (!dep.known(*to) && !dep.offered(*to))
    return refused(Request::Status::refused, "release " + *to + " is unknown: lastgood has not seen it live on " + name +
                                                 " and the deployment does not list it (GET /api/v1/services/" + name + "/releases)");
  if (s.escalated) return refused(Request::Status::refused, "service " + name + " is escalated (" + s.escalation + "): clear it first");
  if (s.acting) return refused(Request::Status::refused, "a rollback of " + name + " is already running");
  policy::Decision d = person_decision(name, "manual", severity, live->id, *to, who.name, reason,
                                       "manual rollback " + live->id + " -> " + *to + " requested by " + who.name + ": " + reason.substr(0, 500), clock_.now());
  return open_person_proposal(si, who, std::move(d), reason, source, approve);
}

Request Pipeline::mark_bad(size_t si, const config::Approver& who, const std::string& release, policy::Severity severity, const std::string& reason,
                           const std::string& source, bool may_propose) {
  auto& s = *svcs_[si];
  const auto& name = s.name();
  if (!s.cfg->deployment) return refused(Request::Status::refused, "service " + name + " has no deployment");
  const auto& dep = s.policy->deployment();
  if (const auto* b = dep.bad(release)) {
    Request r = refused(Request::Status::refused, "release " + release + " was marked bad already, by " + b->by);
    return r;
  }
  if (!recording_.record(Event::release_marked_bad, name, {{"release", release}, {"by", who.name}, {"source", source}, {"reason", reason.substr(0, 500)}}))
    return refused(Request::Status::cannot_record, "lastgood cannot record now (" + recording_.error() + "): nothing was done; try again later");
  s.policy->mark_bad(release, policy::BadMark{who.name, reason.substr(0, 500), clock_.now()});
  logf::warn({.service = name, .release = release}, "service {}: release {} marked bad by {}: {}", name, release, who.name, reason);
  publish_releases(si);
  // Pending proposals that would roll back to it will not be carried out.
  for (const auto& p : proposals_.all())
    if (p.decision.service == name && p.state == ProposalState::pending && p.decision.release_to == release) {
      const std::string id = p.id;
      proposals_.set_state(id, ProposalState::stale);
      notifier_.notify("stale", name, {{"proposal_id", id}, {"release_to", release}, {"reason", "its target " + release + " was marked bad by " + who.name}});
    }
  Request r;
  r.body = {{"service", name}, {"release", release}, {"marked_bad_by", who.name}};
  const auto* live = dep.live();
  if (!live || live->id != release) return r;
  if (!may_propose) {
    r.body["note"] = "the release is live; another replica owns " + name + ": ask it for the rollback (POST /api/v1/services/" + name + "/rollback there)";
    return r;
  }
  // Live: a proposal to roll back from it.
  if (!s.action) {
    r.body["note"] = "the release is live, and this service's deployment cannot be rolled back by lastgood";
    return r;
  }
  const auto* target = dep.rollback_target();
  if (!target) {
    r.body["note"] = "the release is live, and no verified good release is known to roll back to: POST /api/v1/services/" + name + "/rollback with \"to\"";
    return r;
  }
  if (s.escalated) {
    r.body["note"] = "the release is live; the service is escalated (" + s.escalation + "): clear it, then ask for a rollback";
    return r;
  }
  policy::Decision d = person_decision(name, "mark_bad", severity, live->id, target->id, who.name, reason,
                                       "live release " + live->id + " marked bad by " + who.name + ": " + reason.substr(0, 500) + "; roll back to " + target->id,
                                       clock_.now());
  Request opened = open_person_proposal(si, who, std::move(d), reason, source);
  if (opened.status == Request::Status::accepted) {
    for (auto& [k, v] : opened.body.items()) r.body[k] = v;
    r.proposal = opened.proposal;
    r.vote = opened.vote;
  } else {
    r.body["note"] = "marked bad; no proposal was opened: " + opened.error;
    if (opened.proposal) r.body["proposal"] = opened.proposal->id;
  }
  return r;
}

json Pipeline::releases(size_t si) const {
  const auto& dep = svcs_[si]->policy->deployment();
  const auto* live = dep.live();
  const auto* good = dep.last_good();
  json out = json::array();
  std::set<std::string> seen;
  const auto& h = dep.history();
  for (auto it = h.rbegin(); it != h.rend(); ++it) {  // newest first
    const auto& r = *it;
    seen.insert(r.id);
    const auto* bad = dep.bad(r.id);
    json x{{"id", r.id},
           {"live", live && live->id == r.id},
           {"last_good", good && good->id == r.id},
           {"state", bad ? "bad" : r.verified_at ? "verified_good" : "unverified"},
           {"first_seen", ms(r.deployed_at)},
           {"migration", r.migration}};
    if (r.verified_at) x["verified_at"] = ms(*r.verified_at);
    if (bad) {
      x["marked_bad_by"] = bad->by;
      x["marked_bad_reason"] = bad->reason;
      x["marked_bad_at"] = ms(bad->at);
    }
    out.push_back(x);
  }
  for (const auto& [id, bad] : dep.bad_marks()) {  // marked bad before it was ever seen live
    if (seen.count(id)) continue;
    out.push_back({{"id", id}, {"live", false}, {"last_good", false}, {"state", "bad"}, {"marked_bad_by", bad.by}, {"marked_bad_reason", bad.reason},
                   {"marked_bad_at", ms(bad.at)}});
  }
  return json{{"service", svcs_[si]->name()}, {"releases", out}};
}

// ---- silences --------------------------------------------------------------------------------

Silence Pipeline::make_silence(std::vector<std::string> services, policy::Duration length, const std::string& who, const std::string& comment,
                               const std::string& source) {
  Silence s;
  s.id = ids_.make('s', clock_.now());
  s.services = std::move(services);
  s.starts_at = clock_.now();
  s.ends_at = s.starts_at + length;
  s.by = who;
  s.comment = comment.substr(0, 500);
  s.source = source;
  return s;
}

Request Pipeline::add_silence(Silence s) {
  const std::string first = s.services.empty() ? "" : s.services.front();
  json rec = s.to_record();
  rec["source"] = s.source;
  if (!recording_.record(Event::silence_added, first, rec))
    return refused(Request::Status::cannot_record, "lastgood cannot record now (" + recording_.error() + "): no silence was made");
  spdlog::warn("silence {}: {} silenced by {} until {}: {}", s.id, json(s.services).dump(), s.by, format_time(s.ends_at), s.comment);
  Request r;
  r.body = {{"id", s.id}, {"ends_at", format_time(s.ends_at)}, {"services", s.services}};
  silences_.add(std::move(s));
  follow_silences(clock_.now());
  return r;
}

Request Pipeline::expire_silence(const std::string& id, const std::string& who, const std::string& source) {
  const Silence* s = silences_.find(id);
  if (!s) return refused(Request::Status::not_found, "no silence " + id);
  if (s->from_config) return refused(Request::Status::refused, "silence " + id + " is a maintenance window of the config: edit the config and reload");
  if (!s->active(clock_.now()) && (s->expired_at || clock_.now() >= s->ends_at)) return refused(Request::Status::refused, "silence " + id + " has ended already");
  if (!recording_.record(Event::silence_expired, s->services.empty() ? "" : s->services.front(), {{"id", id}, {"by", who}, {"source", source}}))
    return refused(Request::Status::cannot_record, "lastgood cannot record now (" + recording_.error() + "): the silence goes on");
  silences_.expire(id, who, clock_.now());
  spdlog::warn("silence {} expired by {}", id, who);
  follow_silences(clock_.now());
  Request r;
  r.body = {{"id", id}, {"expired_by", who}};
  return r;
}

void Pipeline::set_shared_silences(std::vector<Silence> shared) {
  silences_.set_shared(std::move(shared));
  follow_silences(clock_.now());
}

void Pipeline::shared_bad(size_t si, const std::string& release, const policy::BadMark& mark, const std::string& via) {
  auto& s = *svcs_[si];
  if (s.policy->deployment().bad(release)) return;
  if (!recording_.record(Event::release_marked_bad, s.name(), {{"release", release}, {"by", mark.by}, {"source", via}, {"reason", mark.reason}})) return;
  s.policy->mark_bad(release, mark);
  logf::warn({.service = s.name(), .release = release}, "service {}: release {} marked bad by {} ({}): {}", s.name(), release, mark.by, via, mark.reason);
  publish_releases(si);
}

void Pipeline::follow_silences(policy::TimePoint now) {
  silenced_.resize(svcs_.size(), 0);
  std::vector<char> next(svcs_.size(), 0);
  for (const auto& s : silences_.all()) {
    if (!s.active(now)) continue;
    for (const auto& name : s.services)
      if (auto si = service_index(name)) next[*si] = 1;
  }
  for (size_t si = 0; si < svcs_.size(); ++si) {
    if (next[si] == silenced_[si] || svcs_[si]->retired) continue;
    silenced_[si] = next[si];
    metrics_.silenced(svcs_[si]->name(), next[si] != 0);
    if (next[si]) continue;
    logf::info({.service = svcs_[si]->name()}, "service {}: silence over; a breach still firing is decided now", svcs_[si]->name());
    decide_again(si);
  }
}

}  // namespace lastgood::watchdog
