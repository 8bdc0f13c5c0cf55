#pragma once
// This process as one replica among several (ha.md), wired to the pipeline: the etcd client, the
// replica's lease and campaigns, the coordinator the pipeline asks before acting. What ownership
// changes mean here:
//   acquired (shard, fence): recorded (ha_acquired); each service of the shard whose action a
//     predecessor left active in etcd is reconciled after the kind's step timeout + 2 s (never
//     re-run); then its firing triggers are decided again (the breach is this replica's now).
//   lost (shard, why): recorded (ha_lost); rollbacks under way on the shard's services are
//     cancelled (their I/O, their child processes); nothing more is decided on them.
#include <memory>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "config/config.hpp"
#include "net/supervise.hpp"
#include "watchdog/ha/coordinator.hpp"
#include "watchdog/ha/etcd.hpp"
#include "watchdog/ha/replica.hpp"
#include "watchdog/metrics.hpp"

namespace lastgood::watchdog {
class Pipeline;
}

namespace lastgood::watchdog::ha {

class Node {
 public:
  // Throws std::runtime_error for what cannot work (a TLS file that cannot be read).
  Node(boost::asio::io_context& ioc, const config::Ha& cfg, Pipeline& pipeline, Metrics& metrics);
  ~Node();

  Coordinator& coordinator() { return *coordinator_; }
  // Joins the cluster; `address` is this replica's API (stored in its member and owner keys).
  void start(const std::string& address);
  // Steps down and revokes the lease, so that another replica takes over at once (SIGTERM).
  // resigning() is true until that is done (at most one etcd call's deadline).
  void resign();
  bool resigning() const { return resigning_; }
  void stop();

  // For /readyz and the API: "owner of shard(s) 0,2", "standby", "cut off from etcd: ...",
  // "joining". ready(): false only while cut off or joining.
  std::string describe() const;
  bool ready() const;
  // Called about once a second: the lease gauge.
  void refresh_metrics();

 private:
  void on_change(int shard, std::int64_t fence, const std::string& why);
  boost::asio::awaitable<void> take_over(int shard, std::int64_t fence);

  boost::asio::io_context& ioc_;
  config::Ha cfg_;
  Pipeline& pipeline_;
  Metrics& metrics_;
  std::unique_ptr<EtcdClient> etcd_;
  std::unique_ptr<Replica> replica_;
  std::unique_ptr<HaCoordinator> coordinator_;
  bool resigning_ = false;
  bool started_ = false;
  net::Lifetime life_;  // take-overs
  net::Lifetime resign_life_;  // not ended by stop(): the resign must reach etcd
};

}  // namespace lastgood::watchdog::ha
