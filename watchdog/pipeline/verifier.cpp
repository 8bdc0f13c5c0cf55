#include "watchdog/pipeline/verifier.hpp"

namespace lastgood::watchdog {

using nlohmann::json;

void Verifier::on_result(std::size_t service, bool ok) {
  if (auto& slot = by_service_[service]) slot->seen = ok ? slot->seen + 1 : 0;
}

json Verifier::conditions(const Verification& v, const RecoveryFacts& facts, std::vector<std::string>* missing) {
  json c;
  const bool live_ok = facts.live && *facts.live == v.release;
  c["live"] = {{"expected", v.release}, {"observed", facts.live ? json(*facts.live) : json(nullptr)}, {"held", live_ok}};
  if (!live_ok) missing->push_back(facts.live ? "the live release is " + *facts.live + ", not " + v.release : "the live release could not be read");
  const bool samples_ok = v.seen >= v.needed;
  c["healthy_samples"] = {{"needed", v.needed}, {"seen", v.seen}, {"held", samples_ok}};
  if (!samples_ok) missing->push_back(std::to_string(v.seen) + " of " + std::to_string(v.needed) + " healthy results in a row");
  json ts = json::array();
  for (const auto& [name, state] : facts.triggers) {
    const bool ok = state == policy::TriggerState::ok;
    ts.push_back({{"name", name}, {"state", policy::to_string(state)}, {"held", ok}});
    if (!ok) missing->push_back("trigger " + name + " is " + policy::to_string(state));
  }
  c["triggers"] = ts;
  return c;
}

std::optional<Verifier::Done> Verifier::check(std::size_t service, const std::string& name, const RecoveryFacts& facts, policy::TimePoint now) {
  auto& slot = by_service_[service];
  if (!slot) return std::nullopt;
  auto& v = *slot;
  std::vector<std::string> missing;
  json c = conditions(v, facts, &missing);
  if (missing.empty()) {
    std::string reason = "recovered: " + v.release + " is live, " + std::to_string(v.seen) + " healthy results in a row";
    if (!facts.triggers.empty()) {
      reason += ", and ";
      for (size_t i = 0; i < facts.triggers.size(); ++i) reason += (i ? ", " : "") + facts.triggers[i].first;
      reason += facts.triggers.size() == 1 ? " is back to ok" : " are back to ok";
    }
    // Not recorded, not verified: the next check after the ledger comes back says it.
    if (!rec_.record(Event::verification, name,
                     {{"action_id", v.action_id}, {"release", v.release}, {"outcome", "verified"}, {"healthy_samples", v.seen}, {"conditions", c},
                      {"reason", reason}}))
      return std::nullopt;
    Done d{Result::verified, std::move(v), std::move(reason), std::move(c)};
    slot.reset();
    return d;
  }
  if (now < v.deadline) return std::nullopt;
  std::string reason = "not recovered: ";
  for (size_t i = 0; i < missing.size(); ++i) reason += (i ? "; " : "") + missing[i];
  rec_.record(Event::verification, name,
              {{"action_id", v.action_id}, {"release", v.release}, {"outcome", "not_recovered"}, {"healthy_samples", v.seen}, {"conditions", c},
               {"reason", reason}});
  Done d{Result::not_recovered, std::move(v), std::move(reason), std::move(c)};
  slot.reset();
  return d;
}

void Verifier::extend(policy::Duration by) {
  for (auto& v : by_service_)
    if (v) v->deadline += by;
}

}  // namespace lastgood::watchdog
