#include "watchdog/api/views.hpp"

#include "watchdog/state/records.hpp"

namespace lastgood::watchdog {

using nlohmann::json;

json proposals_view(const Pipeline& p) {
  json out = json::array();
  for (const auto& x : p.proposals().all()) out.push_back(x.to_json(p.proposals().authority(x.decision.severity)));
  return out;
}

json service_view(const Pipeline& p, size_t si, policy::TimePoint t) {
  const auto& s = p.service(si);
  const auto& sp = *s.policy;
  json j;
  auto rel = [](const policy::Release* r) -> json {
    if (!r) return nullptr;
    json x{{"id", r->id}, {"deployed_at", ms(r->deployed_at)}, {"deployed_at_from_source", r->deployed_at_from_source}, {"migration", r->migration}};
    if (r->verified_at) x["verified_good_at"] = ms(*r->verified_at);
    return x;
  };
  j["live_release"] = rel(sp.deployment().live());
  j["last_good_release"] = rel(sp.deployment().last_good());
  j["rollback_target"] = rel(sp.deployment().rollback_target());
  j["watcher_healthy"] = !sp.watcher_unhealthy();
  j["escalated"] = s.escalated;
  if (s.escalated) j["escalation"] = s.escalation;
  if (!s.observe_error.empty()) j["observe_error"] = s.observe_error;
  if (const auto* v = p.verifying(si)) {
    std::vector<std::string> missing;
    j["verifying"] = {{"action_id", v->action_id}, {"release", v->release}, {"healthy_so_far", v->seen}, {"needed", v->needed}, {"deadline", ms(v->deadline)},
                      {"conditions", Verifier::conditions(*v, p.recovery_facts(si), &missing)}, {"waiting_for", missing}};
  }
  json ts = json::array();
  for (auto v : sp.triggers(t)) {
    if (v.state == policy::TriggerState::firing || v.state == policy::TriggerState::pending) p.explain(si, v.evidence);
    ts.push_back({{"name", v.name},
                  {"severity", policy::to_string(v.severity)},
                  {"rule", v.rule},
                  {"state", policy::to_string(v.state)},
                  {"since", ms(v.since)},
                  {"shadow", v.shadow},
                  {"evidence", to_json(v.evidence)}});
  }
  j["triggers"] = ts;
  json props = json::array();
  for (const auto& x : p.proposals().all())
    if (x.decision.service == s.name() && x.state == ProposalState::pending) props.push_back(x.to_json(p.proposals().authority(x.decision.severity)));
  j["pending_proposals"] = props;
  if (const Silence* sl = p.silenced(si)) j["silenced"] = sl->to_json(t);
  return j;
}

std::pair<int, json> vote_response(const VoteOutcome& v) {
  auto error = [&](int status) { return std::pair<int, json>{status, json{{"error", v.error}}}; };
  switch (v.status) {
    case VoteStatus::counted:
    case VoteStatus::duplicate:
    case VoteStatus::rejected:
      return {200, v.proposal->to_json()};
    case VoteStatus::execute:
      return {202, v.proposal->to_json()};
    case VoteStatus::cannot_record: return error(503);
    case VoteStatus::unauthorized: return error(401);
    case VoteStatus::unknown: return error(404);
    case VoteStatus::forbidden: return error(403);
    case VoteStatus::escalated:
    case VoteStatus::not_pending:
    case VoteStatus::cannot_act:
      return error(409);
  }
  return error(500);
}

std::pair<int, json> request_response(const Request& r, int ok_status) {
  switch (r.status) {
    case Request::Status::accepted:
      return {r.vote == VoteStatus::execute ? 202 : ok_status, r.body};
    case Request::Status::refused: {
      json b{{"error", r.error}};
      if (r.proposal) b["proposal"] = r.proposal->id;
      return {409, b};
    }
    case Request::Status::forbidden: return {403, json{{"error", r.error}}};
    case Request::Status::not_found: return {404, json{{"error", r.error}}};
    case Request::Status::cannot_record: return {503, json{{"error", r.error}}};
  }
  return {500, json{{"error", "unexpected"}}};
}

}  // namespace lastgood::watchdog
