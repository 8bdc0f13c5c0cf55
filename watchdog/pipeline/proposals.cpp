#include "watchdog/pipeline/proposals.hpp"
#include "watchdog/log_fields.hpp"


#include <map>

#include <algorithm>

#include <spdlog/spdlog.h>

#include "watchdog/state/records.hpp"

namespace lastgood::watchdog {

using nlohmann::json;

json Proposal::to_json(const policy::Authority* authority) const {
  auto votes = [](const std::vector<Vote>& v) {
    json out = json::array();
    for (const auto& x : v) out.push_back({{"approver", x.approver}, {"role", x.role}, {"comment", x.comment}, {"at", ms(x.at)}});
    return out;
  };
  json j{{"id", id},
         {"origin", decision.origin},
         {"decision", watchdog::to_json(decision)},
         {"created_at", ms(created_at)},
         {"expires_at", ms(expires_at)},
         {"state", name(state)},
         {"quorum", quorum},
         {"approvals_needed", std::max(0, quorum - static_cast<int>(approvals.size()))},
         {"approvals", votes(approvals)},
         {"rejections", votes(rejections)}};
  if (!decision.requested_by.empty()) j["requested_by"] = decision.requested_by;
  if (authority) {
    json roles = authority->roles;
    if (!authority->secondary_roles.empty()) {
      j["secondary"] = {{"roles", authority->secondary_roles}, {"from", ms(created_at + authority->secondary_after)}, {"open", secondary_open}};
      if (secondary_open)
        for (const auto& r : authority->secondary_roles) roles.push_back(r);
    }
    j["may_approve"] = roles;
  }
  return j;
}

std::string Proposals::role_for(const config::Approver& who, policy::Severity severity, policy::TimePoint created_at) const {
  const auto* a = authority(severity);
  if (!a) return "";
  for (const auto& r : who.roles)
    if (std::find(a->roles.begin(), a->roles.end(), r) != a->roles.end()) return r;
  if (a->secondary_roles.empty() || clock_.now() < created_at + a->secondary_after) return "";
  for (const auto& r : who.roles)
    if (std::find(a->secondary_roles.begin(), a->secondary_roles.end(), r) != a->secondary_roles.end()) return r;
  return "";
}

void Proposals::remind(policy::TimePoint now) {
  for (auto& p : proposals_) {
    if (p.state != ProposalState::pending || now >= p.expires_at || !rec_.writable()) continue;
    const auto* a = authority(p.decision.severity);
    if (!a) continue;
    json details{{"proposal_id", p.id},
                 {"trigger", p.decision.trigger},
                 {"severity", policy::to_string(p.decision.severity)},
                 {"release_from", p.decision.release_from.value_or("")},
                 {"release_to", p.decision.release_to.value_or("")},
                 {"approvals", p.approvals.size()},
                 {"quorum", p.quorum},
                 {"expires_at", ms(p.expires_at)}};
    const std::string waiting = "proposal " + p.id + " still waits for approval (" + std::to_string(p.approvals.size()) + "/" +
                                std::to_string(p.quorum) + "), expires in " +
                                std::to_string(std::chrono::duration_cast<std::chrono::minutes>(p.expires_at - now).count()) + " min";
    if (!a->secondary_roles.empty() && !p.secondary_open && now >= p.created_at + a->secondary_after) {
      p.secondary_open = true;
      p.last_reminded = now;
      std::string roles;
      for (const auto& r : a->secondary_roles) roles += (roles.empty() ? "" : ", ") + r;
      rec_.record(Event::proposal_reminded, p.decision.service, {{"id", p.id}, {"secondary", a->secondary_roles}});
      details["secondary_roles"] = a->secondary_roles;
      details["reason"] = waiting + "; no quorum after " + config::format_duration(a->secondary_after) + ": the secondary authority (" + roles +
                          ") may now approve too";
      logf::warn({.service = p.decision.service, .trigger = p.decision.trigger, .proposal_id = p.id}, "proposal {}: no quorum after {}: {} may now approve too", p.id, config::format_duration(a->secondary_after), roles);
      notify_("reminder", p.decision.service, details);
      if (on_change) on_change(p);
      continue;
    }
    const auto since = std::max(p.created_at, p.last_reminded);
    if (a->remind_every.count() > 0 && now - since >= a->remind_every) {
      p.last_reminded = now;
      rec_.record(Event::proposal_reminded, p.decision.service, {{"id", p.id}});
      details["reason"] = waiting;
      notify_("reminder", p.decision.service, details);
    }
  }
}

Proposals::Proposals(Recorder& rec, const Clock& clock, const std::map<policy::Severity, policy::Authority>& authority, Ids& ids,
                     Notify notify)
    : rec_(rec), clock_(clock), authority_(&authority), ids_(ids), notify_(std::move(notify)) {}

Proposal* Proposals::get(const std::string& id) {
  for (auto& p : proposals_)
    if (p.id == id) return &p;
  return nullptr;
}
const Proposal* Proposals::find(const std::string& id) const { return const_cast<Proposals*>(this)->get(id); }

int Proposals::pending() const {
  int n = 0;
  for (const auto& p : proposals_) n += p.state == ProposalState::pending;
  return n;
}

void Proposals::publish() {
  if (!on_pending) return;
  std::map<std::string, int> by_service;  // every service with a proposal kept, 0 when none waits
  for (const auto& p : proposals_) by_service[p.decision.service] += p.state == ProposalState::pending;
  for (const auto& [service, n] : by_service) on_pending(service, n);
}

const Proposal* Proposals::create(const policy::Decision& d, policy::Duration approval_timeout) {
  Proposal p;
  p.id = ids_.make('p', d.at);
  p.decision = d;
  p.created_at = d.at;
  p.expires_at = d.at + approval_timeout;
  if (auto a = authority_->find(d.severity); a != authority_->end()) p.quorum = a->second.quorum;
  if (!rec_.record(Event::proposal_created, d.service, {{"id", p.id}, {"decision", to_json(d)}, {"expires_at", ms(p.expires_at)}, {"quorum", p.quorum}}))
    return nullptr;
  logf::warn({.service = d.service, .trigger = d.trigger, .release = d.release_to.value_or(""), .proposal_id = p.id},
             "proposal {}: roll back {} {} -> {} awaits approval until {}s from now", p.id, d.service, d.release_from.value_or("?"),
               d.release_to.value_or("?"), approval_timeout.count() / 1000);
  proposals_.push_back(std::move(p));
  while (proposals_.size() > kKept && proposals_.front().state != ProposalState::pending) proposals_.pop_front();
  publish();
  if (on_change) on_change(proposals_.back());
  return &proposals_.back();
}

const Proposal* Proposals::adopt(Proposal p, const std::string& from_replica) {
  if (find(p.id)) return nullptr;
  p.state = ProposalState::pending;
  p.approvals.clear();  // counted again from the votes where they are kept (etcd)
  p.rejections.clear();
  if (!rec_.record(Event::proposal_created, p.decision.service,
                   {{"id", p.id}, {"decision", to_json(p.decision)}, {"expires_at", ms(p.expires_at)}, {"quorum", p.quorum}, {"adopted_from", from_replica}}))
    return nullptr;
  logf::warn({.service = p.decision.service, .trigger = p.decision.trigger, .release = p.decision.release_to.value_or(""), .proposal_id = p.id},
             "proposal {}: taken over from replica {}; roll back {} {} -> {} awaits approval", p.id, from_replica, p.decision.service,
               p.decision.release_from.value_or("?"), p.decision.release_to.value_or("?"));
  proposals_.push_back(std::move(p));
  publish();
  return &proposals_.back();
}

const Proposal* Proposals::open_for(const std::string& service, const std::optional<std::string>& from) const {
  for (const auto& p : proposals_)
    if (p.decision.service == service && p.decision.release_from == from && blocks_new_proposal(p.state)) return &p;
  return nullptr;
}

void Proposals::set_state(const std::string& id, ProposalState s) {
  if (id.empty()) return;
  for (auto& p : proposals_)
    if (p.id == id) {
      p.state = s;
      rec_.record(Event::proposal_state, p.decision.service, {{"id", id}, {"state", name(s)}});
      if (on_change) on_change(p);
    }
  publish();
}

bool Proposals::expire(policy::TimePoint now) {
  bool changed = false;
  for (auto& p : proposals_) {
    if (p.state == ProposalState::pending && now >= p.expires_at && rec_.writable()) {
      p.state = ProposalState::expired;
      changed = true;
      rec_.record(Event::proposal_expired, p.decision.service, {{"id", p.id}});
      if (on_change) on_change(p);
      notify_("expired", p.decision.service, {{"proposal_id", p.id}, {"trigger", p.decision.trigger}, {"reason", "no approval in time"}});
      logf::warn({.service = p.decision.service, .trigger = p.decision.trigger, .proposal_id = p.id}, "proposal {} for {} expired without approval: nothing was done", p.id,
                 p.decision.service);
    }
  }
  if (changed) publish();
  return changed;
}

// A pending proposal whose `from` is no longer live would undo a newer release: it becomes stale
// (ledger, page, notice) and approvals answer 409.
void Proposals::mark_stale(const std::string& service, const std::string& live) {
  for (auto& p : proposals_) {
    if (p.decision.service != service || p.state != ProposalState::pending || !p.decision.release_from || *p.decision.release_from == live)
      continue;
    set_state(p.id, ProposalState::stale);
    logf::warn({.service = service, .trigger = p.decision.trigger, .release = live, .proposal_id = p.id},
               "proposal {} is stale: it would roll {} back from {}, but the live release is now {}", p.id, service, *p.decision.release_from, live);
    notify_("stale", service,
            {{"proposal_id", p.id}, {"trigger", p.decision.trigger}, {"release_from", *p.decision.release_from}, {"live", live},
             {"reason", "the live release changed to " + live + " since the proposal; it will not be carried out"}});
  }
}

VoteOutcome Proposals::vote(const std::string& id, const config::Approver* who, bool approve, const std::string& comment,
                            const std::string& source, const Facts& facts) {
  const std::string verb = approve ? "approve" : "reject";
  auto attempt = [&](const std::string& service, const std::string& outcome, const std::string& role = "") {
    if (!who) {  // without a valid token: bounded, and never the request's body
      rec_.record_unauthenticated(Event::approval_attempt, service, source,
                                  {{"proposal", id.substr(0, 64)}, {"action", verb}, {"approver", json()}, {"outcome", outcome}});
      return;
    }
    rec_.record(Event::approval_attempt, service,
                {{"proposal", id.substr(0, 64)}, {"action", verb}, {"approver", who->name}, {"role", role}, {"source", source}, {"outcome", outcome},
                 {"comment", comment.substr(0, 500)}});
  };
  Proposal* p = get(id);
  if (!rec_.writable()) return {VoteStatus::cannot_record, p, "lastgood cannot record now (" + rec_.error() + "): no vote is taken; try again later"};
  if (!who) {
    attempt(p ? p->decision.service : "", "unauthorized");
    return {VoteStatus::unauthorized, p, "a valid approver token is required (Authorization: Bearer TOKEN)"};
  }
  if (!p) {
    attempt("", "unknown_proposal");
    return {VoteStatus::unknown, nullptr, "no proposal " + id};
  }
  const std::string service = p->decision.service;
  const std::string role = role_for(*who, p->decision.severity, p->created_at);
  if (role.empty()) {
    attempt(service, "forbidden");
    std::string why = who->name + " holds no role allowed to decide on " + policy::to_string(p->decision.severity) + " proposals";
    if (const auto* a = authority(p->decision.severity); a && !a->secondary_roles.empty() && clock_.now() < p->created_at + a->secondary_after)
      why += " (the secondary roles may approve from " + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(p->created_at + a->secondary_after - clock_.now()).count()) +
             " s from now)";
    return {VoteStatus::forbidden, p, why};
  }
  const ServiceFacts now = facts(service);
  // The release it would roll back from must still be live (a deploy may have come since).
  if (p->state == ProposalState::pending && now.live && p->decision.release_from && *now.live != *p->decision.release_from)
    mark_stale(service, *now.live);
  // An escalated service waits for a person to look and clear it: a proposal made before the
  // escalation is not carried out behind it.
  if (p->state == ProposalState::pending && approve && now.escalated) {
    attempt(service, "escalated", role);
    return {VoteStatus::escalated, p,
            "service " + service + " is escalated (" + now.escalation + "): clear it first (POST /api/v1/services/" + service +
                "/clear); nothing will be done"};
  }
  if (p->state != ProposalState::pending) {
    attempt(service, "not_pending", role);
    std::string why = "proposal " + id + " is " + std::string(name(p->state));
    if (p->state == ProposalState::stale) why += ": the live release is no longer " + p->decision.release_from.value_or("?") + "; nothing will be done";
    return {VoteStatus::not_pending, p, why};
  }
  const Proposal::Vote v{who->name, role, comment.substr(0, 500), clock_.now()};
  if (!approve) {
    p->rejections.push_back(v);
    rec_.record(Event::proposal_vote, service, {{"id", id}, {"approve", false}, {"approver", v.approver}, {"role", role}, {"comment", v.comment}});
    attempt(service, "rejected", role);
    set_state(id, ProposalState::rejected);
    notify_("rejected", service, {{"proposal_id", id}, {"trigger", p->decision.trigger}, {"reason", "rejected by " + who->name}, {"by", who->name}});
    logf::warn({.service = service, .trigger = p->decision.trigger, .proposal_id = id}, "proposal {} rejected by {} ({}): nothing will be done", id, who->name, role);
    return {VoteStatus::rejected, p, ""};
  }
  for (const auto& a : p->approvals)
    if (a.approver == who->name) {
      attempt(service, "duplicate", role);
      return {VoteStatus::duplicate, p, ""};  // the same approver twice counts once
    }
  p->approvals.push_back(v);
  rec_.record(Event::proposal_vote, service, {{"id", id}, {"approve", true}, {"approver", v.approver}, {"role", role}, {"comment", v.comment}});
  attempt(service, "counted", role);
  logf::warn({.service = service, .trigger = p->decision.trigger, .proposal_id = id}, "proposal {}: approved by {} ({}), {}/{}", id, who->name, role, p->approvals.size(),
             p->quorum);
  if (static_cast<int>(p->approvals.size()) < p->quorum) return {VoteStatus::counted, p, ""};
  set_state(id, ProposalState::approved);
  json approvers = json::array();
  for (const auto& a : p->approvals) approvers.push_back(a.approver);
  notify_("approved", service, {{"proposal_id", id}, {"trigger", p->decision.trigger}, {"reason", "approved by a quorum of " + std::to_string(p->quorum)},
                                {"approvers", approvers}, {"release_from", p->decision.release_from.value_or("")},
                                {"release_to", p->decision.release_to.value_or("")}});
  if (!now.can_act) {
    set_state(id, ProposalState::failed);
    return {VoteStatus::cannot_act, p, "approved, but the service cannot be rolled back now (no action or one already running)"};
  }
  set_state(id, ProposalState::executing);  // (cooldown and budget count from its action_started)
  return {VoteStatus::execute, p, ""};
}

void Proposals::replay(Event type, const LedgerEntry& e) {
  const auto at = from_ms(e.ts_ms);
  const std::string id = e.data.value("id", "");
  switch (type) {
    case Event::proposal_created: {
      Proposal p;
      p.id = id;
      p.created_at = at;
      p.expires_at = from_ms(e.data.value("expires_at", 0LL));
      p.quorum = e.data.value("quorum", 1);
      p.decision = decision_from_json(e.service, e.data.contains("decision") ? e.data["decision"] : json());
      proposals_.push_back(std::move(p));
      break;
    }
    case Event::proposal_vote:
      if (auto* p = get(id)) {
        Proposal::Vote v{e.data.value("approver", ""), e.data.value("role", ""), e.data.value("comment", ""), at};
        (e.data.value("approve", true) ? p->approvals : p->rejections).push_back(v);
      }
      break;
    case Event::proposal_state:
      if (auto* p = get(id))
        if (auto s = parse_proposal_state(e.data.value("state", ""))) p->state = *s;
      break;
    case Event::proposal_expired:
      if (auto* p = get(id)) p->state = ProposalState::expired;
      break;
    case Event::proposal_reminded:
      if (auto* p = get(id)) {
        p->last_reminded = at;
        if (e.data.contains("secondary")) p->secondary_open = true;
      }
      break;
    default:
      break;
  }
}

std::vector<std::string> Proposals::unstarted(const std::set<std::string>& started) const {
  std::vector<std::string> out;
  for (const auto& p : proposals_)
    if ((p.state == ProposalState::approved || p.state == ProposalState::executing) && !started.count(p.id)) out.push_back(p.id);
  return out;
}

void Proposals::trim() {
  while (proposals_.size() > kKept) proposals_.pop_front();
  publish();
}

}  // namespace lastgood::watchdog
