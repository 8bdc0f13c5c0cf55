#include "policy/deployment.hpp"

#include <algorithm>

namespace lastgood::policy {

bool DeploymentTracker::observe(const std::string& id, std::optional<TimePoint> deployed_at, TimePoint now, bool migration) {
  if (const Release* l = live(); l && l->id == id) {
    auto& cur = history_[static_cast<size_t>(live_)];
    cur.migration = cur.migration || migration;
    if (deployed_at && !cur.deployed_at_from_source) {  // the source now says when: trust it
      cur.deployed_at = *deployed_at;
      cur.deployed_at_from_source = true;
    }
    return false;
  }
  auto it = std::find_if(history_.begin(), history_.end(), [&](const Release& r) { return r.id == id; });
  Release r;
  if (it != history_.end()) {  // an older release came back (a rollback): keep what we know of it
    r = *it;
    history_.erase(it);
  }
  r.id = id;
  r.deployed_at = deployed_at.value_or(now);
  r.deployed_at_from_source = deployed_at.has_value();
  r.migration = r.migration || migration;
  history_.push_back(std::move(r));
  if (history_.size() > kMaxHistory) {
    // Drop the oldest release that is not good; if all are good, the oldest.
    auto victim = std::find_if(history_.begin(), history_.end() - 1, [](const Release& x) { return !x.verified_at; });
    history_.erase(victim == history_.end() - 1 ? history_.begin() : victim);
  }
  live_ = static_cast<int>(history_.size()) - 1;
  healthy_since_.reset();  // health must be seen again for the new release
  ok_since_ = 0;
  return true;
}

void DeploymentTracker::sample(SampleOutcome o) {
  if (o == SampleOutcome::ok) {
    ++ok_since_;
  } else if (o == SampleOutcome::fail) {
    healthy_since_.reset();
    ok_since_ = 0;
  }
}

bool DeploymentTracker::health(bool healthy, TimePoint now, Duration good_after, int min_ok, bool may_verify) {
  if (live_ < 0) return false;
  auto& cur = history_[static_cast<size_t>(live_)];
  if (!healthy) {
    healthy_since_.reset();
    ok_since_ = 0;
    return false;
  }
  if (!healthy_since_) healthy_since_ = now;
  if (now - *healthy_since_ < good_after || ok_since_ < std::max(1, min_ok)) return false;
  if (!may_verify) return false;
  cur.last_good_at = now;
  if (cur.verified_at) return false;
  cur.verified_at = now;
  return true;
}

const Release* DeploymentTracker::last_good() const {
  const Release* best = nullptr;
  for (const auto& r : history_)
    if (r.last_good_at && !bad(r.id) && (!best || *r.last_good_at > *best->last_good_at)) best = &r;
  return best;
}

const Release* DeploymentTracker::rollback_target() const {
  const Release* l = live();
  const Release* best = nullptr;
  for (const auto& r : history_) {
    if ((l && r.id == l->id) || bad(r.id)) continue;
    if (r.last_good_at && (!best || *r.last_good_at > *best->last_good_at)) best = &r;
  }
  return best;
}

void DeploymentTracker::mark_good(const std::string& id, TimePoint at) {
  for (auto& r : history_) {
    if (r.id != id) continue;
    if (!r.verified_at) r.verified_at = at;
    if (!r.last_good_at || *r.last_good_at < at) r.last_good_at = at;
  }
}

void DeploymentTracker::mark_bad(const std::string& id, BadMark mark) {
  std::erase_if(bad_, [&](const auto& b) { return b.first == id; });
  bad_.emplace_back(id, std::move(mark));
  if (bad_.size() > kMaxBad) bad_.erase(bad_.begin());
}

const BadMark* DeploymentTracker::bad(const std::string& id) const {
  for (const auto& [k, m] : bad_)
    if (k == id) return &m;
  return nullptr;
}

bool DeploymentTracker::known(const std::string& id) const {
  return std::any_of(history_.begin(), history_.end(), [&](const Release& r) { return r.id == id; });
}

void DeploymentTracker::offer(std::vector<Offered> releases) {
  if (releases.size() > kMaxHistory) releases.erase(releases.begin(), releases.end() - static_cast<std::ptrdiff_t>(kMaxHistory));
  offered_ = std::move(releases);
}

bool DeploymentTracker::offered(const std::string& id) const {
  return std::any_of(offered_.begin(), offered_.end(), [&](const Offered& r) { return r.id == id; });
}

std::optional<Offered> DeploymentTracker::unverified_target() const {
  const Release* l = live();
  if (!l) return std::nullopt;
  // Where the live release is in the deployment's own order; releases listed after it are newer.
  std::ptrdiff_t live_at = -1;
  for (size_t i = 0; i < offered_.size(); ++i)
    if (offered_[i].id == l->id) live_at = static_cast<std::ptrdiff_t>(i);
  // (plain values, not an optional: GCC 12 sees an uninitialised optional where there is none)
  bool live_time_known = l->deployed_at_from_source;
  TimePoint live_time = l->deployed_at;
  if (live_at >= 0 && offered_[static_cast<size_t>(live_at)].deployed_at) {
    live_time_known = true;
    live_time = *offered_[static_cast<size_t>(live_at)].deployed_at;
  }
  for (std::ptrdiff_t i = static_cast<std::ptrdiff_t>(offered_.size()) - 1; i >= 0; --i) {
    const auto& r = offered_[static_cast<size_t>(i)];
    if (r.id == l->id || bad(r.id)) continue;
    const bool older = live_at >= 0 ? i < live_at : (live_time_known && r.deployed_at && *r.deployed_at < live_time);
    if (older) return r;
  }
  return std::nullopt;
}

}  // namespace lastgood::policy
