#include "watchdog/ha/coordinator.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "net/supervise.hpp"
#include "watchdog/ha/intent.hpp"

namespace lastgood::watchdog::ha {

namespace asio = boost::asio;
using nlohmann::json;

namespace {

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

const KeyValue* first_of(const TxnResult& r, size_t i) { return i < r.ranges.size() && !r.ranges[i].empty() ? &r.ranges[i][0] : nullptr; }

}  // namespace

Grant HaCoordinator::may_act(const std::string& service) {
  const int shard = shard_of(service, shards_);
  if (const auto f = fence_of_(shard)) return {true, static_cast<std::uint64_t>(*f), "", replica_, 0};
  return {false, 0, "this replica does not own shard " + std::to_string(shard) + " of service " + service + " (standby, or cut off from etcd)",
          replica_, 0};
}

asio::awaitable<Grant> HaCoordinator::begin(const Intent& in) {
  Grant g = may_act(in.service);
  if (!g.granted || !etcd_) co_return g;
  const int shard = shard_of(in.service, shards_);
  const auto fence = static_cast<std::int64_t>(g.fence);
  auto refuse = [&](std::string why) {
    g.granted = false;
    g.fence = 0;
    g.why = std::move(why);
    return g;
  };
  // The service's state as it is now: the last action (by any replica) and its time.
  const std::string state_key = keys_.service_state(in.service);  // (GCC 12: no temporaries in co_await)
  auto read = co_await etcd_->range(state_key);
  if (auto* e = std::get_if<EtcdError>(&read)) co_return refuse("etcd could not be asked for the service's state: " + e->message);
  std::int64_t state_mod = 0;
  json state = json::object();
  if (const auto& kvs = std::get<RangeResult>(read).kvs; !kvs.empty()) {
    state_mod = kvs[0].mod_revision;
    state = json::parse(kvs[0].value, nullptr, false);
    if (!state.is_object()) co_return refuse("the service's state in etcd (" + keys_.service_state(in.service) + ") is not a JSON object");
  }
  // Another replica's action inside the cooldown is this breach's action: not a second one.
  if (const auto last = state.find("last"); last != state.end() && last->is_object()) {
    const std::int64_t at = last->value("at_ms", std::int64_t{0});
    if (at > 0 && wall_ms() - at < in.cooldown.count()) {
      Grant held = refuse("action " + last->value("action_id", std::string("?")) + " by replica " + last->value("replica", std::string("?")) + " (" +
                          last->value("from", std::string("?")) + " -> " + last->value("to", std::string("?")) + ") is within the cooldown");
      held.retry = false;  // a hold, as a local cooldown is
      co_return held;
    }
  }
  // The budget is the service's, whichever replica spent it: the rollbacks of the last 24 h.
  json recent = json::array();
  if (const auto rb = state.find("rollbacks"); rb != state.end() && rb->is_array())
    for (const auto& x : *rb)
      if (x.is_object() && wall_ms() - x.value("at_ms", std::int64_t{0}) < 24LL * 3600 * 1000) recent.push_back(x);
  if (in.max_per_day > 0 && recent.size() >= static_cast<size_t>(in.max_per_day)) {
    Grant held = refuse("rollback budget spent across the replicas: " + std::to_string(recent.size()) + " rollback(s) in the last 24h (max_per_day " +
                        std::to_string(in.max_per_day) + ")");
    held.retry = false;
    co_return held;
  }
  recent.push_back(json{{"action_id", in.action_id}, {"at_ms", wall_ms()}});
  state["rollbacks"] = recent;
  FencedIntent fi;
  fi.service = in.service;
  fi.action_id = in.action_id;
  fi.shard = shard;
  fi.fence = fence;
  fi.lease = lease_of_ ? lease_of_() : 0;
  fi.state_mod = state_mod;
  json record{{"action_id", in.action_id}, {"service", in.service}, {"kind", in.kind}, {"trigger", in.trigger}, {"from", in.from},
              {"to", in.to}, {"via", in.via}, {"replica", replica_}, {"epoch", fence}, {"state", "intent"}, {"at_ms", wall_ms()}};
  fi.record = record.dump();
  state["last"] = json{{"action_id", in.action_id}, {"from", in.from}, {"to", in.to}, {"replica", replica_}, {"at_ms", wall_ms()}};
  fi.state = state.dump();
  const Txn txn = intent_txn(keys_, fi);
  auto t = co_await etcd_->txn(txn);
  if (auto* e = std::get_if<EtcdError>(&t)) co_return refuse("the fenced intent could not be committed: " + e->message);
  const auto& r = std::get<TxnResult>(t);
  if (!r.succeeded) {
    const KeyValue* owner = first_of(r, 0);
    const KeyValue* active = first_of(r, 1);
    if (!owner || owner->create_revision != fence) co_return refuse("this replica no longer owns shard " + std::to_string(shard) + " (fence " + std::to_string(fence) + ")");
    if (owner->lease != fi.lease) co_return refuse("the owner key is no longer on this replica's lease");
    if (active) co_return refuse("action " + active->value + " of this service is still active (reconciled by its owner first)");
    if (const KeyValue* esc = first_of(r, 2)) {
      const json e = json::parse(esc->value, nullptr, false);
      co_return refuse("the service is escalated (by replica " + (e.is_object() ? e.value("replica", std::string("?")) : std::string("?")) + ": " +
                       (e.is_object() ? e.value("why", std::string("?")) : std::string("?")) + "); no replica acts until a person clears it");
    }
    co_return refuse("the service's state changed in etcd since it was read");
  }
  g.fence = static_cast<std::uint64_t>(r.revision);
  g.etcd_rev = r.revision;
  g.record_mod = r.revision;
  record["fence"] = r.revision;
  open_[in.action_id] = Open{fi, std::move(record)};
  co_return g;
}

asio::awaitable<bool> HaCoordinator::running(const Intent& in, Grant& g, std::string* why) {
  if (!etcd_ || g.etcd_rev == 0) co_return true;
  const auto it = open_.find(in.action_id);
  if (it == open_.end()) {
    if (why) *why = "the intent of " + in.action_id + " is not known to this replica";
    co_return false;
  }
  json record = it->second.record;
  record["state"] = "running";
  record["running_at_ms"] = wall_ms();
  const Txn t = running_txn(keys_, it->second.intent, g.record_mod, record.dump());
  auto r = co_await etcd_->txn(t);
  if (auto* e = std::get_if<EtcdError>(&r)) {
    if (why) *why = "the intent could not be marked running in etcd: " + e->message;
    co_return false;
  }
  const auto& done = std::get<TxnResult>(r);
  if (!done.succeeded) {
    if (why) *why = "this replica no longer owns the service, or its intent was reconciled by another replica";
    co_return false;
  }
  g.record_mod = done.revision;
  co_return true;
}

asio::awaitable<void> HaCoordinator::finish(const Intent& in, const Grant& g, bool ran, bool ok, const std::string& error) {
  if (!etcd_ || g.etcd_rev == 0) co_return;
  open_.erase(in.action_id);
  json outcome{{"action_id", in.action_id}, {"service", in.service}, {"from", in.from}, {"to", in.to}, {"replica", replica_},
               {"fence", g.etcd_rev}, {"state", !ran ? "never_ran" : ok ? "done" : "failed"}, {"error", error}, {"at_ms", wall_ms()}};
  // The first attempt now; while etcd is away, retried in the background (the marker is what
  // stops the service's next action), so that verification and a drain do not wait for it.
  const std::string service = in.service, id = in.action_id;
  const std::int64_t mod = g.record_mod;
  if (co_await close_once(service, id, mod, outcome, ran)) co_return;
  net::spawn(
      etcd_->executor(),
      [this, service, id, mod, outcome, ran]() -> asio::awaitable<void> {
        asio::steady_timer timer(etcd_->executor());
        for (int attempt = 0; attempt < 10; ++attempt) {
          timer.expires_after(std::chrono::milliseconds(500));
          co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
          if (co_await close_once(service, id, mod, outcome, ran)) co_return;
        }
        spdlog::error("ha: action {} of {}: the finish could not be written to etcd; the service's next action waits for its reconciliation",
                      id, service);
      },
      "ha", life_);
}

// One attempt at closing an action in etcd: true when done with it (closed, or changed by
// another replica), false when etcd could not be reached.
asio::awaitable<bool> HaCoordinator::close_once(std::string service, std::string id, std::int64_t record_mod, json outcome, bool ran) {
  Txn t;
  if (ran) {
    t = finish_txn(keys_, service, id, record_mod, outcome.dump());
  } else {
    // Never ran: the cooldown does not count it. The state loses `last` when it is this action.
    const std::string state_key = keys_.service_state(service);
    auto read = co_await etcd_->range(state_key);
    if (std::holds_alternative<EtcdError>(read)) co_return false;
    std::int64_t state_mod = 0;
    std::string new_state;
    if (const auto& kvs = std::get<RangeResult>(read).kvs; !kvs.empty()) {
      state_mod = kvs[0].mod_revision;
      json st = json::parse(kvs[0].value, nullptr, false);
      if (st.is_object()) {
        bool changed = false;
        if (st.contains("last") && st["last"].is_object() && st["last"].value("action_id", std::string()) == id) {
          st.erase("last");
          changed = true;
        }
        if (st.contains("rollbacks") && st["rollbacks"].is_array()) {  // nor for the budget
          json kept = json::array();
          for (const auto& x : st["rollbacks"])
            if (!x.is_object() || x.value("action_id", std::string()) != id) kept.push_back(x);
          changed = changed || kept.size() != st["rollbacks"].size();
          st["rollbacks"] = kept;
        }
        if (changed) new_state = st.dump();
      }
    }
    t = never_ran_txn(keys_, service, id, record_mod, outcome.dump(), state_mod, new_state);
  }
  auto r = co_await etcd_->txn(t);
  if (std::holds_alternative<EtcdError>(r)) co_return false;
  if (!std::get<TxnResult>(r).succeeded)
    spdlog::warn("ha: action {} of {}: its etcd record was changed by another replica (reconciled there); the finish is not written", id, service);
  co_return true;
}

asio::awaitable<bool> HaCoordinator::close_never_ran(const std::string& service, const Inherited& a, const json& outcome) {
  if (!etcd_) co_return false;
  const std::string svc = service, id = a.action_id;
  co_return co_await close_once(svc, id, a.mod, outcome, false);
}

asio::awaitable<std::optional<HaCoordinator::Inherited>> HaCoordinator::inherited(const std::string& service, std::string* error) {
  if (!etcd_) co_return std::nullopt;
  const std::string active_key = keys_.service_active(service);
  auto a = co_await etcd_->range(active_key);
  if (auto* e = std::get_if<EtcdError>(&a)) {
    if (error) *error = e->message;
    co_return std::nullopt;
  }
  const auto& kvs = std::get<RangeResult>(a).kvs;
  if (kvs.empty()) co_return std::nullopt;
  Inherited in;
  in.action_id = kvs[0].value;
  const std::string record_key = keys_.action(in.action_id);
  auto rec = co_await etcd_->range(record_key);
  if (auto* e = std::get_if<EtcdError>(&rec)) {
    if (error) *error = e->message;
    co_return std::nullopt;
  }
  const auto& rk = std::get<RangeResult>(rec).kvs;
  if (!rk.empty()) {
    in.mod = rk[0].mod_revision;
    in.record = json::parse(rk[0].value, nullptr, false);
  }
  if (!in.record.is_object()) in.record = json{{"action_id", in.action_id}};
  co_return in;
}

asio::awaitable<std::optional<std::map<std::string, std::string>>> HaCoordinator::active_actions(std::string* error) {
  if (!etcd_) co_return std::nullopt;
  const std::string prefix = keys_.prefix() + "svc/";
  auto r = co_await etcd_->range(prefix, true);
  if (auto* e = std::get_if<EtcdError>(&r)) {
    if (error) *error = e->message;
    co_return std::nullopt;
  }
  std::map<std::string, std::string> out;
  constexpr std::string_view tail = "/active";
  for (const auto& kv : std::get<RangeResult>(r).kvs)
    if (kv.key.size() > prefix.size() + tail.size() && kv.key.compare(kv.key.size() - tail.size(), tail.size(), tail) == 0)
      out[kv.key.substr(prefix.size(), kv.key.size() - prefix.size() - tail.size())] = kv.value;
  co_return out;
}

asio::awaitable<bool> HaCoordinator::close_inherited(const std::string& service, const Inherited& a, const json& outcome) {
  if (!etcd_) co_return false;
  Txn t;
  using T = Compare::Target;
  t.compare.push_back({keys_.service_active(service), T::value, Compare::Result::equal, 0, a.action_id});
  if (a.mod != 0) t.compare.push_back({keys_.action(a.action_id), T::mod, Compare::Result::equal, a.mod, ""});
  t.success.push_back(Op::put(keys_.action(a.action_id), outcome.dump()));
  t.success.push_back(Op::del(keys_.service_active(service)));
  auto r = co_await etcd_->txn(t);
  auto* done = std::get_if<TxnResult>(&r);
  co_return done && done->succeeded;
}

}  // namespace lastgood::watchdog::ha
