#include "watchdog/pipeline/verifier.hpp"

namespace lastgood::watchdog {

std::optional<Verifier::Done> Verifier::on_result(std::size_t service, const std::string& name, bool ok) {
  auto& slot = by_service_[service];
  if (!slot) return std::nullopt;
  auto& v = *slot;
  v.seen = ok ? v.seen + 1 : 0;
  if (v.seen < v.needed) return std::nullopt;
  // Not recorded, not verified: the next healthy result after the ledger comes back says it.
  if (!rec_.record(Event::verification, name, {{"action_id", v.action_id}, {"release", v.release}, {"outcome", "verified"}, {"healthy_samples", v.seen}}))
    return std::nullopt;
  Done d{Result::verified, std::move(v)};
  slot.reset();
  return d;
}

std::optional<Verifier::Done> Verifier::on_tick(std::size_t service, const std::string& name, policy::TimePoint now) {
  auto& slot = by_service_[service];
  if (!slot || now < slot->deadline) return std::nullopt;
  Done d{Result::not_recovered, std::move(*slot)};
  slot.reset();
  rec_.record(Event::verification, name, {{"action_id", d.v.action_id}, {"release", d.v.release}, {"outcome", "not_recovered"}, {"healthy_samples", d.v.seen}});
  return d;
}

void Verifier::extend(policy::Duration by) {
  for (auto& v : by_service_)
    if (v) v->deadline += by;
}

}  // namespace lastgood::watchdog
