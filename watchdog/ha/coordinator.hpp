#pragma once
// The coordinator of a replica among several (ha.md). may_act(): this replica owns the service's
// shard now (its transaction won and the local deadline has not passed). begin(): the fenced
// intent transaction (watchdog/ha/intent), whose revision is the action's token; refused when
// the ownership, the lease, the service's state or its active action changed. finish(): the
// action's outcome replaces the intent and the active marker goes, only under the same token.
// inherited()/close_inherited(): a new owner's view of an action its predecessor left unfinished.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json.hpp>

#include "net/supervise.hpp"
#include "watchdog/ha/etcd.hpp"
#include "watchdog/ha/intent.hpp"
#include "watchdog/ha/placement.hpp"
#include "watchdog/pipeline/coordinator.hpp"

namespace lastgood::watchdog::ha {

class HaCoordinator final : public Coordinator {
 public:
  // `fence_of(shard)`: the fence while this replica owns the shard (Replica::fence), else nullopt.
  using FenceOf = std::function<std::optional<std::int64_t>(int shard)>;
  // This replica's lease (Replica::lease): the owner key must still be on it.
  using LeaseOf = std::function<std::int64_t()>;
  // `etcd` null: may_act() only (unit tests).
  HaCoordinator(std::string cluster, std::string replica, int shards, FenceOf fence_of, LeaseOf lease_of = {}, EtcdClient* etcd = nullptr)
      : keys_(cluster), replica_(std::move(replica)), shards_(shards), fence_of_(std::move(fence_of)), lease_of_(std::move(lease_of)), etcd_(etcd) {}

  Grant may_act(const std::string& service) override;
  boost::asio::awaitable<Grant> begin(const Intent& intent) override;
  boost::asio::awaitable<bool> running(const Intent& intent, Grant& grant, std::string* why) override;
  boost::asio::awaitable<void> finish(const Intent& intent, const Grant& grant, bool ran, bool ok, const std::string& error) override;
  void escalated(const std::string& service, const std::string& why, const std::string& action_id) override {
    if (on_escalated) on_escalated(service, why, action_id);
  }
  // Set by the node: shares an escalation through etcd.
  std::function<void(const std::string& service, const std::string& why, const std::string& action_id)> on_escalated;

  struct Inherited {
    std::string action_id;
    nlohmann::json record;   // the intent as written (action_id, from, to, replica, fence, state "intent" or "running", ...)
    std::int64_t mod = 0;    // the record's mod revision: closed only if unchanged
  };
  // The active action of `service` that this replica did not start itself (nullopt: none, or
  // etcd could not be read: `error` says which).
  boost::asio::awaitable<std::optional<Inherited>> inherited(const std::string& service, std::string* error = nullptr);
  // The services with an active action (service -> action id): one range of the services'
  // prefix, whatever the number of services. nullopt: etcd could not be read (`error`).
  boost::asio::awaitable<std::optional<std::map<std::string, std::string>>> active_actions(std::string* error = nullptr);
  // Closes an inherited action with what the new owner found (reconciled, never re-run).
  boost::asio::awaitable<bool> close_inherited(const std::string& service, const Inherited& a, const nlohmann::json& outcome);
  // Closes an inherited intent that was never marked running: it never ran, and its time does
  // not count for the service's cooldown.
  boost::asio::awaitable<bool> close_never_ran(const std::string& service, const Inherited& a, const nlohmann::json& outcome);

  int shards() const { return shards_; }
  const Keys& keys() const { return keys_; }

 private:
  Keys keys_;
  std::string replica_;
  int shards_;
  FenceOf fence_of_;
  LeaseOf lease_of_;
  EtcdClient* etcd_;
  struct Open {
    FencedIntent intent;
    nlohmann::json record;
  };
  std::map<std::string, Open> open_;  // intents begun here and not finished (action id -> intent)
  boost::asio::awaitable<bool> close_once(std::string service, std::string id, std::int64_t record_mod, nlohmann::json outcome, bool ran);
  net::Lifetime life_;  // background retries of finish(); last: ended first
};

}  // namespace lastgood::watchdog::ha
