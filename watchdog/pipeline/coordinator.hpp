#pragma once
// May this replica act on this service, and under which fencing token? Asked before every
// action_started. A single lastgood always may, with token 0; with several replicas the answer
// comes from etcd (shared/ha.md: one owner per service, a fencing token on every action).
//
// Two steps: may_act() is the cheap gate, asked when a breach is decided (a standby holds);
// begin() is the fenced intent, committed right before action_started (with several replicas,
// one etcd transaction whose revision is the token). finish() closes what begin() opened.
#include <chrono>
#include <cstdint>
#include <string>

#include <boost/asio/awaitable.hpp>

namespace lastgood::watchdog {

struct Grant {
  bool granted = true;
  std::uint64_t fence = 0;   // the action's token (0: a single replica, no fencing)
  std::string why;           // when not granted
  std::string replica;       // with several replicas: this replica's id
  std::int64_t etcd_rev = 0; // the intent transaction's revision (== fence)
};

// What an action is about to do, for the intent.
struct Intent {
  std::string service, action_id, kind, trigger, from, to, via;
  std::chrono::milliseconds cooldown{0};  // the service's cooldown: no second action inside it
};

class Coordinator {
 public:
  virtual ~Coordinator() = default;
  virtual Grant may_act(const std::string& service) = 0;
  virtual boost::asio::awaitable<Grant> begin(const Intent& intent) { co_return may_act(intent.service); }
  // The action's end, under the grant begin() gave.
  virtual boost::asio::awaitable<void> finish(const Intent&, const Grant&, bool /*ok*/, const std::string& /*error*/) { co_return; }
};

class LocalCoordinator final : public Coordinator {
 public:
  Grant may_act(const std::string&) override { return {}; }
};

}  // namespace lastgood::watchdog
