#include "watchdog/ha/intent.hpp"

namespace lastgood::watchdog::ha {

Txn intent_txn(const Keys& keys, const FencedIntent& i) {
  using T = Compare::Target;
  using R = Compare::Result;
  Txn t;
  t.compare.push_back({keys.owner(i.shard), T::create, R::equal, i.fence, ""});
  t.compare.push_back({keys.owner(i.shard), T::lease, R::equal, i.lease, ""});
  t.compare.push_back({keys.service_active(i.service), T::create, R::equal, 0, ""});
  t.compare.push_back({keys.service_state(i.service), T::mod, R::equal, i.state_mod, ""});
  t.compare.push_back({keys.escalation(i.service), T::create, R::equal, 0, ""});
  if (i.proposal_mod) t.compare.push_back({keys.proposal(i.proposal_id), T::mod, R::equal, *i.proposal_mod, ""});
  t.success.push_back(Op::put(keys.action(i.action_id), i.record));
  // No lease on the marker: it outlives its owner, so that a new owner reconciles the action.
  t.success.push_back(Op::put(keys.service_active(i.service), i.action_id));
  t.success.push_back(Op::put(keys.service_state(i.service), i.state));
  // On failure, what changed: who owns the shard, which action is active.
  t.failure.push_back(Op::range(keys.owner(i.shard)));
  t.failure.push_back(Op::range(keys.service_active(i.service)));
  t.failure.push_back(Op::range(keys.escalation(i.service)));
  return t;
}

Txn running_txn(const Keys& keys, const FencedIntent& i, std::int64_t record_mod, const std::string& record) {
  using T = Compare::Target;
  using R = Compare::Result;
  Txn t;
  t.compare.push_back({keys.owner(i.shard), T::create, R::equal, i.fence, ""});
  t.compare.push_back({keys.owner(i.shard), T::lease, R::equal, i.lease, ""});
  t.compare.push_back({keys.action(i.action_id), T::mod, R::equal, record_mod, ""});
  t.compare.push_back({keys.service_active(i.service), T::value, R::equal, 0, i.action_id});
  t.success.push_back(Op::put(keys.action(i.action_id), record));
  return t;
}

Txn finish_txn(const Keys& keys, const std::string& service, const std::string& action_id, std::int64_t record_mod, const std::string& outcome) {
  Txn t;
  t.compare.push_back({keys.action(action_id), Compare::Target::mod, Compare::Result::equal, record_mod, ""});
  t.compare.push_back({keys.service_active(service), Compare::Target::value, Compare::Result::equal, 0, action_id});
  t.success.push_back(Op::put(keys.action(action_id), outcome));
  t.success.push_back(Op::del(keys.service_active(service)));
  return t;
}

Txn never_ran_txn(const Keys& keys, const std::string& service, const std::string& action_id, std::int64_t record_mod, const std::string& outcome,
                  std::int64_t state_mod, const std::string& new_state) {
  Txn t = finish_txn(keys, service, action_id, record_mod, outcome);
  if (!new_state.empty()) {
    t.compare.push_back({keys.service_state(service), Compare::Target::mod, Compare::Result::equal, state_mod, ""});
    t.success.push_back(Op::put(keys.service_state(service), new_state));
  }
  return t;
}

}  // namespace lastgood::watchdog::ha
