#pragma once
// One replica's membership and ownership (ha.md): a lease kept alive, its member key on the lease,
// and a campaign for each shard in the rendezvous order. Ownership of a shard is the owner key
// created by this replica's transaction; its fence is that transaction's revision.
//
// The local deadline: the send time of the last successful keepalive + TTL - 1 s, on
// CLOCK_BOOTTIME (a suspended machine's clock keeps counting). Past it, or with no successful
// keepalive for renew_deadline, the replica owns nothing, whatever etcd may still say: owns()
// answers false from that instant, and on_change reports the loss.
//
// Watching for loss: the shard keys are read (one range for all of them) every `retry`; the
// requests per second do not grow with the number of services.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include "net/supervise.hpp"
#include "watchdog/ha/etcd.hpp"
#include "watchdog/ha/placement.hpp"

namespace lastgood::watchdog::ha {

// CLOCK_BOOTTIME, which counts through suspend.
std::chrono::nanoseconds boot_now();

struct ReplicaOptions {
  std::string cluster;
  std::string replica;
  std::string address;  // where this replica's API answers (stored in its member and owner keys)
  int shards = 1;
  std::chrono::seconds lease{15};
  std::chrono::milliseconds renew_deadline{10'000};
  std::chrono::milliseconds retry{2'000};
  // Whether an action runs on the shard's services now: a shard is handed over to the replica
  // first in its rendezvous order only while nothing runs on it.
  std::function<bool(int shard)> busy = nullptr;
  // Whether this replica can act at all now (its ledger takes entries). While it cannot, it
  // leaves the members, campaigns for nothing and hands over the shards it owns (those not busy),
  // so that a healthy replica acts instead; it joins again once it can. Empty: always.
  std::function<bool()> healthy = nullptr;
};

class Replica {
 public:
  enum class State { starting, standby, owner, cut_off };
  // acquired: fence > 0; lost: fence == 0 and `why` says why.
  using OnChange = std::function<void(int shard, std::int64_t fence, const std::string& why)>;

  Replica(boost::asio::any_io_executor ex, EtcdClient& etcd, ReplicaOptions options, OnChange on_change);
  ~Replica();
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  void start();
  // Steps down at once (reporting every shard lost) and revokes the lease, so that another
  // replica need not wait for it to expire (SIGTERM).
  boost::asio::awaitable<void> resign();
  void stop();

  // Whether this replica owns `shard` now: its transaction won and the local deadline has not
  // passed. The fence when it does.
  std::optional<std::int64_t> fence(int shard) const;
  bool owns(int shard) const { return fence(shard).has_value(); }
  State state() const;
  // Until the local deadline (zero or less: passed).
  std::chrono::nanoseconds lease_remaining() const;
  const ReplicaOptions& options() const { return o_; }
  // The lease this replica's keys are on (0: none yet).
  std::int64_t lease() const { return lease_; }

 private:
  boost::asio::awaitable<void> run();
  boost::asio::awaitable<bool> ensure_lease();
  boost::asio::awaitable<void> keepalive_if_due();
  boost::asio::awaitable<void> campaign_round();
  // ha.md: a watch on the shard owners' keys; a key deleted (resigned, lease expired, handed
  // over) starts a round at once instead of at the next `retry`. Plain-HTTP endpoints only
  // (over TLS the rounds every `retry` alone see it).
  boost::asio::awaitable<void> watch_owners();
  void wake();
  void lose_all(const std::string& why);

  boost::asio::any_io_executor ex_;
  EtcdClient& etcd_;
  ReplicaOptions o_;
  Keys keys_;
  OnChange on_change_;
  std::int64_t lease_ = 0;
  std::chrono::nanoseconds deadline_{0};        // boot time; owns nothing past it
  std::chrono::nanoseconds last_keepalive_{0};  // boot time of the last successful keepalive's send
  std::map<int, std::int64_t> owned_;           // shard -> fence
  std::map<int, std::chrono::nanoseconds> free_since_;  // shard -> boot time it was first seen free
  std::map<std::string, std::chrono::nanoseconds> member_since_;  // member -> boot time it was first seen
  bool cut_off_ = false;
  bool stopped_ = false;
  bool woken_ = false;
  bool member_ = false;  // this replica's member key is in etcd (left while not healthy)  // an owner key went while a round ran: the next round starts at once
  boost::asio::steady_timer timer_;
  net::Lifetime life_;  // last: the loop is cancelled first
};

}  // namespace lastgood::watchdog::ha
