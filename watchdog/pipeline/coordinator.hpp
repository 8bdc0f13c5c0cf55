#pragma once
// May this replica act on this service, and under which fencing token? Asked before every
// action_started. A single lastgood always may, with token 0; with several replicas the answer
// comes from etcd (shared/ha.md: one owner per service, a fencing token on every action).
//
// Two steps: may_act() is the cheap gate, asked when a breach is decided (a standby holds);
// begin() is the fenced intent, committed right before action_started (with several replicas,
// one etcd transaction whose revision is the token). running() marks the intent as running once
// action_started is durable, right before the target is touched: an intent never marked running
// is known never to have run (a crash between the two is not taken for an interrupted action).
// finish() closes what begin() opened.
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
  std::int64_t record_mod = 0; // the action record's revision now (the intent's, then running()'s)
  bool retry = true;           // not granted for a passing reason (etcd away, a state that changed): worth asking again soon
};

// What an action is about to do, for the intent.
struct Intent {
  std::string service, action_id, kind, trigger, from, to, via;
  std::chrono::milliseconds cooldown{0};  // the service's cooldown: no second action inside it
  int max_per_day = 0;                    // the service's budget, across the replicas (0: none)
};

class Coordinator {
 public:
  virtual ~Coordinator() = default;
  virtual Grant may_act(const std::string& service) = 0;
  virtual boost::asio::awaitable<Grant> begin(const Intent& intent) { co_return may_act(intent.service); }
  // action_started is durable: the intent becomes running (false: it could not be marked, so the
  // action must not run; the intent stays "never started" for whoever reconciles it).
  virtual boost::asio::awaitable<bool> running(const Intent&, Grant&, std::string* /*why*/) { co_return true; }
  // The action's end, under the grant begin() gave. `ran` false: the target was never touched
  // (the intent is closed as never started, and does not count for the cooldown). Returns once
  // the first attempt is made; retries while etcd is away go on in the background.
  virtual boost::asio::awaitable<void> finish(const Intent&, const Grant&, bool /*ran*/, bool /*ok*/, const std::string& /*error*/) { co_return; }
  // The service was escalated here (no automatic action until a person clears it): with several
  // replicas, shared so that none acts on it.
  virtual void escalated(const std::string& /*service*/, const std::string& /*why*/, const std::string& /*action_id*/) {}
};

class LocalCoordinator final : public Coordinator {
 public:
  Grant may_act(const std::string&) override { return {}; }
};

}  // namespace lastgood::watchdog
