#include "watchdog/pipeline/checkpoint.hpp"

#include <algorithm>
#include <stdexcept>

#include "watchdog/pipeline/clock.hpp"
#include "watchdog/pipeline/proposals.hpp"

namespace lastgood::watchdog {

using nlohmann::json;

namespace {

// Reading a snapshot back: a malformed one is damage, named by its path in the entry's data.
[[noreturn]] void malformed(const std::string& path, const std::string& expected) {
  throw std::runtime_error("snapshot: " + path + ": expected " + expected);
}
const json& member(const json& j, const std::string& path, const char* key) {
  if (!j.is_object() || !j.contains(key)) malformed(path + "." + key, "a member");
  return j[key];
}
std::string str_at(const json& j, const std::string& path, const char* key) {
  const json& v = member(j, path, key);
  if (!v.is_string()) malformed(path + "." + key, "a string");
  return v.get<std::string>();
}
// Times are milliseconds since the epoch, up to the year 2200: a TimePoint (nanoseconds) holds
// them without overflow (found by fuzz/fuzz_snapshot).
constexpr long long kMaxMs = 7'258'118'400'000;
bool time_ms(const json& v) { return v.is_number_integer() && v.get<long long>() >= 0 && v.get<long long>() <= kMaxMs; }
long long ms_at(const json& j, const std::string& path, const char* key) {
  const json& v = member(j, path, key);
  if (!time_ms(v)) malformed(path + "." + key, "milliseconds since the epoch (an integer, before the year 2200)");
  return v.get<long long>();
}
std::optional<policy::TimePoint> opt_time(const json& j, const std::string& path, const char* key) {
  const json& v = member(j, path, key);
  if (v.is_null()) return std::nullopt;
  if (!time_ms(v)) malformed(path + "." + key, "milliseconds since the epoch (before the year 2200) or null");
  return from_ms(v.get<long long>());
}
bool bool_at(const json& j, const std::string& path, const char* key) {
  const json& v = member(j, path, key);
  if (!v.is_boolean()) malformed(path + "." + key, "true or false");
  return v.get<bool>();
}
json opt_ms(const std::optional<policy::TimePoint>& t) { return t ? json(ms(*t)) : json(nullptr); }

json save_service(const Checkpoint::ServiceState& s) {
  const auto saved = s.deployment.saved();
  json history = json::array();
  for (const auto& r : saved.history)
    history.push_back({{"id", r.id}, {"deployed_at", ms(r.deployed_at)}, {"from_source", r.deployed_at_from_source}, {"migration", r.migration},
                       {"verified_at", opt_ms(r.verified_at)}, {"last_good_at", opt_ms(r.last_good_at)}});
  json bad = json::array();
  for (const auto& [id, m] : saved.bad) bad.push_back({{"release", id}, {"by", m.by}, {"reason", m.reason}, {"at", ms(m.at)}});
  json rollbacks = json::array();
  for (auto t : s.budget.rollbacks()) rollbacks.push_back(ms(t));
  return {{"deployment", {{"history", std::move(history)}, {"bad", std::move(bad)}, {"live", saved.live}}},
          {"budget", {{"last_decision", opt_ms(s.budget.last_decision())}, {"rollbacks", std::move(rollbacks)}}},
          {"escalated", s.escalated ? json(*s.escalated) : json(nullptr)}};
}

bool empty_state(const Checkpoint::ServiceState& s) {
  return s.deployment.history().empty() && s.deployment.bad_marks().empty() && !s.budget.last_decision() && s.budget.rollbacks().empty() &&
         !s.escalated;
}

Checkpoint::ServiceState load_service(const json& j, const std::string& path) {
  Checkpoint::ServiceState s;
  const json& dep = member(j, path, "deployment");
  policy::DeploymentTracker::Saved saved;
  const json& history = member(dep, path + ".deployment", "history");
  if (!history.is_array()) malformed(path + ".deployment.history", "an array");
  for (size_t i = 0; i < history.size(); ++i) {
    const std::string at = path + ".deployment.history[" + std::to_string(i) + "]";
    policy::Release r;
    r.id = str_at(history[i], at, "id");
    r.deployed_at = from_ms(ms_at(history[i], at, "deployed_at"));
    r.deployed_at_from_source = bool_at(history[i], at, "from_source");
    r.migration = bool_at(history[i], at, "migration");
    r.verified_at = opt_time(history[i], at, "verified_at");
    r.last_good_at = opt_time(history[i], at, "last_good_at");
    saved.history.push_back(std::move(r));
  }
  const json& bad = member(dep, path + ".deployment", "bad");
  if (!bad.is_array()) malformed(path + ".deployment.bad", "an array");
  for (size_t i = 0; i < bad.size(); ++i) {
    const std::string at = path + ".deployment.bad[" + std::to_string(i) + "]";
    saved.bad.emplace_back(str_at(bad[i], at, "release"), policy::BadMark{str_at(bad[i], at, "by"), str_at(bad[i], at, "reason"), from_ms(ms_at(bad[i], at, "at"))});
  }
  const json& live = member(dep, path + ".deployment", "live");
  if (!live.is_number_integer() || live.get<long long>() < -1 || live.get<long long>() >= static_cast<long long>(saved.history.size()))
    malformed(path + ".deployment.live", "-1 or an index into history");
  saved.live = live.get<int>();
  s.deployment.restore(std::move(saved));
  const json& budget = member(j, path, "budget");
  const json& rb = member(budget, path + ".budget", "rollbacks");
  if (!rb.is_array()) malformed(path + ".budget.rollbacks", "an array");
  std::vector<policy::TimePoint> rollbacks;
  for (const auto& t : rb) {
    if (!time_ms(t)) malformed(path + ".budget.rollbacks", "milliseconds since the epoch (before the year 2200)");
    rollbacks.push_back(from_ms(t.get<long long>()));
  }
  s.budget.restore(opt_time(budget, path + ".budget", "last_decision"), std::move(rollbacks));
  const json& esc = member(j, path, "escalated");
  if (!esc.is_null() && !esc.is_string()) malformed(path + ".escalated", "the reason or null");
  if (esc.is_string()) s.escalated = esc.get<std::string>();
  return s;
}

json carried_json(const LedgerEntry& e) { return {{"seq", e.seq}, {"ts", e.ts_ms}, {"type", e.type}, {"service", e.service}, {"data", e.data}}; }

bool action_chain(Event t) {
  return t == Event::action_started || t == Event::action_finished || t == Event::action_reconciled || t == Event::verification ||
         t == Event::escalated;
}
bool proposal_entry(Event t) {
  return t == Event::proposal_created || t == Event::proposal_vote || t == Event::proposal_state || t == Event::proposal_expired ||
         t == Event::proposal_reminded;
}
// The types whose entries name a service whose state replay rebuilds.
bool service_state(Event t) {
  return t == Event::release_observed || t == Event::release_verified_good || t == Event::decision || t == Event::release_marked_bad ||
         t == Event::cleared || action_chain(t);
}

}  // namespace

Checkpoint::Checkpoint() : replayer_(std::make_unique<Replayer>(static_cast<ReplayTarget&>(*this), nullptr)) {}

std::size_t Checkpoint::state_of(const std::string& name) {
  auto [it, added] = index_.try_emplace(name, names_.size());
  if (added) {
    names_.push_back(name);
    states_.emplace_back();
  }
  return it->second;
}

std::optional<std::size_t> Checkpoint::service_index(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? std::nullopt : std::optional<std::size_t>(it->second);
}
void Checkpoint::release(std::size_t si, const std::string& id, std::optional<policy::TimePoint> deployed_at, policy::TimePoint at, bool migration) {
  states_[si].deployment.observe(id, deployed_at, at, migration);
}
void Checkpoint::verified_good(std::size_t si, const std::string& id, policy::TimePoint at) { states_[si].deployment.mark_good(id, at); }
void Checkpoint::decision(std::size_t si, policy::DecisionKind kind, policy::TimePoint at) {
  // As ServicePolicy::replay_decision: a proposal counts against the cooldown; an execute counts
  // from its action_started.
  if (kind == policy::DecisionKind::propose) states_[si].budget.note_decision(at);
}
void Checkpoint::rollback_started(std::size_t si, policy::TimePoint at) { states_[si].budget.note_rollback(at); }
void Checkpoint::escalated(std::size_t si, const std::string& reason) { states_[si].escalated = reason; }
void Checkpoint::cleared(std::size_t si) { states_[si].escalated.reset(); }
void Checkpoint::marked_bad(std::size_t si, const std::string& release, policy::BadMark mark) { states_[si].deployment.mark_bad(release, std::move(mark)); }
void Checkpoint::silence(Event type, const LedgerEntry& e) { silences_.replay(type, e); }

void Checkpoint::keep(const LedgerEntry& e, Event type) {
  const auto id_of = [&](const char* key) { return e.data.is_object() && e.data.contains(key) && e.data[key].is_string() ? e.data[key].get<std::string>() : std::string(); };
  if (action_chain(type)) {
    const std::string id = id_of("action_id");
    if (id.empty()) return;
    if (type == Event::action_started) {
      const std::string via = id_of("via");
      if (via.rfind("proposal ", 0) == 0) action_proposal_[id] = via.substr(9);
    }
    actions_[id].push_back(e);
  } else if (proposal_entry(type)) {
    const std::string id = id_of("id");
    if (type == Event::proposal_created) {
      proposal_order_.push_back(id);
      proposals_[id].push_back(e);
    } else if (auto it = proposals_.find(id); it != proposals_.end()) {
      it->second.push_back(e);
    }
  } else if (type == Event::notify_queued) {
    notices_[id_of("id")] = e;
  } else if (type == Event::notify_delivered || type == Event::notify_failed) {
    notices_.erase(id_of("id"));
  } else if (type == Event::silence_added || type == Event::silence_expired) {
    silence_entries_[id_of("id")].push_back(e);
  }
}

void Checkpoint::feed(const LedgerEntry& e) {
  const auto type = parse_event(e.type);
  if (!type) return;  // replay refuses the ledger; nothing to fold
  if (*type == Event::snapshot) {
    restore(e.data);
    return;
  }
  if (service_state(*type)) state_of(e.service);
  replayer_->feed(e);
  incidents_.observe(*type, e.service, e.ts_ms, e.data);
  Notifier::fold_open(pagerduty_, e);
  keep(e, *type);
  if (++fed_since_prune_ >= 100000) prune();
}

void Checkpoint::prune() {
  fed_since_prune_ = 0;
  while (proposal_order_.size() > Proposals::kKept) {
    proposals_.erase(proposal_order_.front());
    proposal_order_.pop_front();
  }
  std::set<std::string> kept_proposals(proposal_order_.begin(), proposal_order_.end());
  replayer_->keep_started(kept_proposals);
  for (auto it = actions_.begin(); it != actions_.end();) {
    const auto& id = it->first;
    const auto p = action_proposal_.find(id);
    const bool wanted = replayer_->open_actions().count(id) || replayer_->unverified_actions().count(id) ||
                        (p != action_proposal_.end() && kept_proposals.count(p->second));
    if (wanted) {
      ++it;
      continue;
    }
    if (p != action_proposal_.end()) action_proposal_.erase(p);
    it = actions_.erase(it);
  }
  std::set<std::string> listed;
  for (const auto& s : silences_.all()) listed.insert(s.id);
  std::erase_if(silence_entries_, [&](const auto& kv) { return !listed.count(kv.first); });
}

std::size_t Checkpoint::carried() const {
  std::size_t n = notices_.size();
  for (const auto& [id, es] : actions_) n += es.size();
  for (const auto& [id, es] : proposals_) n += es.size();
  for (const auto& [id, es] : silence_entries_) n += es.size();
  return n;
}

json Checkpoint::snapshot() {
  prune();
  json services = json::object();
  for (std::size_t i = 0; i < states_.size(); ++i)
    if (!empty_state(states_[i])) services[names_[i]] = save_service(states_[i]);
  std::vector<const LedgerEntry*> carried;
  for (const auto& [id, es] : actions_)
    for (const auto& e : es) carried.push_back(&e);
  for (const auto& [id, es] : proposals_)
    for (const auto& e : es) carried.push_back(&e);
  for (const auto& [id, e] : notices_) carried.push_back(&e);
  for (const auto& [id, es] : silence_entries_)
    for (const auto& e : es) carried.push_back(&e);
  std::sort(carried.begin(), carried.end(), [](const LedgerEntry* a, const LedgerEntry* b) { return a->seq < b->seq; });
  carried.erase(std::unique(carried.begin(), carried.end(), [](const LedgerEntry* a, const LedgerEntry* b) { return a->seq == b->seq; }), carried.end());
  json entries = json::array();
  for (const auto* e : carried) entries.push_back(carried_json(*e));
  return {{"services", std::move(services)},
          {"incidents", incidents_.save()},
          {"pagerduty", Notifier::save_open(pagerduty_)},
          {"carried", std::move(entries)}};
}

std::map<std::string, Checkpoint::ServiceState> Checkpoint::load_services(const json& snapshot) {
  const json& services = member(snapshot, "data", "services");
  if (!services.is_object()) malformed("data.services", "an object of services");
  std::map<std::string, ServiceState> out;
  for (const auto& [name, s] : services.items()) out.emplace(name, load_service(s, "data.services." + name));
  return out;
}

std::vector<LedgerEntry> Checkpoint::load_carried(const json& snapshot) {
  const json& carried = member(snapshot, "data", "carried");
  if (!carried.is_array()) malformed("data.carried", "an array of entries");
  std::vector<LedgerEntry> out;
  std::uint64_t last = 0;
  for (size_t i = 0; i < carried.size(); ++i) {
    const std::string at = "data.carried[" + std::to_string(i) + "]";
    const json& c = carried[i];
    const json& seq = member(c, at, "seq");
    if (!seq.is_number_integer() || seq.get<long long>() <= 0 || seq.get<std::uint64_t>() <= last) malformed(at + ".seq", "a seq above the one before it");
    LedgerEntry e;
    e.seq = last = seq.get<std::uint64_t>();
    e.ts_ms = ms_at(c, at, "ts");
    e.type = str_at(c, at, "type");
    e.service = str_at(c, at, "service");
    e.data = member(c, at, "data");
    if (!parse_event(e.type) || e.type == name(Event::snapshot)) malformed(at + ".type", "an event this version knows (not a snapshot)");
    out.push_back(std::move(e));
  }
  return out;
}

void Checkpoint::restore(const json& snapshot) {
  auto loaded = load_services(snapshot);
  auto carried = load_carried(snapshot);
  Incidents incidents;
  incidents.restore(member(snapshot, "data", "incidents"));
  auto pagerduty = Notifier::load_open(member(snapshot, "data", "pagerduty"));
  // All read: now replace what was held.
  replayer_ = std::make_unique<Replayer>(static_cast<ReplayTarget&>(*this), nullptr);
  index_.clear();
  names_.clear();
  states_.clear();
  for (auto& [name, s] : loaded) states_[state_of(name)] = std::move(s);
  incidents_ = std::move(incidents);
  pagerduty_ = std::move(pagerduty);
  silences_ = Silences();
  actions_.clear();
  action_proposal_.clear();
  proposals_.clear();
  proposal_order_.clear();
  notices_.clear();
  silence_entries_.clear();
  for (const auto& e : carried) {
    const auto type = *parse_event(e.type);
    if (service_state(type)) state_of(e.service);
    replayer_->feed(e, true);
    keep(e, type);
  }
}

}  // namespace lastgood::watchdog
