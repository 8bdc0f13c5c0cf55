#pragma once
// This process as one replica among several (ha.md), wired to the pipeline: the etcd client, the
// replica's lease and campaigns, the coordinator the pipeline asks before acting. What ownership
// changes mean here:
//   acquired (shard, fence): recorded (ha_acquired); each service of the shard whose action a
//     predecessor left active in etcd is reconciled after the kind's step timeout + 2 s (never
//     re-run); then its firing triggers are decided again (the breach is this replica's now).
//   lost (shard, why): recorded (ha_lost); rollbacks under way on the shard's services are
//     cancelled (their I/O, their child processes); nothing more is decided on them.
#include <chrono>
#include <deque>
#include <map>
#include <vector>
#include <memory>
#include <set>
#include <string>
#include <utility>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "config/config.hpp"
#include "net/supervise.hpp"
#include "watchdog/ha/coordinator.hpp"
#include "watchdog/ha/etcd.hpp"
#include "watchdog/ha/replica.hpp"
#include "watchdog/api/server.hpp"
#include "watchdog/metrics.hpp"
#include "watchdog/pipeline/proposals.hpp"
#include "watchdog/state/silences.hpp"

namespace lastgood::watchdog {
class Pipeline;
}

namespace lastgood::watchdog::ha {

class Node {
 public:
  // Throws std::runtime_error for what cannot work (a TLS file that cannot be read).
  // `config` (its ha block, approvers and authority) must outlive the node.
  Node(boost::asio::io_context& ioc, const config::Config& config, Pipeline& pipeline, Metrics& metrics);
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

  // A vote taken by this replica, whichever owns the service (ha.md, Approvals): one etcd
  // transaction (the proposal still as read, so still pending; this approver's vote key absent),
  // a copy in this replica's ledger; the owner counts it towards the quorum. 503 without an etcd
  // quorum: no vote is taken.
  boost::asio::awaitable<HttpRes> vote(std::string id, const config::Approver* who, bool approve, std::string comment, std::string client);
  // GET /api/v1/proposals on any replica: this replica's own proposals (`local`, as
  // proposals_view gives them) and the open ones (pending, approved, executing) that other
  // replicas own, as their owners keep them in etcd. etcd is read at most once a second whatever
  // the number of requests; when it cannot be read, the answer says so (etcd_error) and lists
  // what this replica has.
  boost::asio::awaitable<HttpRes> proposals(nlohmann::json local);
  // GET /api/v1/services on any replica: this replica's view (`body`: every replica probes every
  // service), with each service's shard, owner and whether this replica is it, and an escalation
  // kept in etcd (by whichever replica) shown as such. etcd read at most once a second.
  boost::asio::awaitable<HttpRes> services(nlohmann::json body);
  // GET /api/v1/incidents on any replica: this replica's incident records, and the actions of
  // the other replicas kept in etcd (within ha.retention) as short entries (`source: etcd`,
  // `replica`): the full record is on the replica that ran or took over the action.
  boost::asio::awaitable<HttpRes> incidents(nlohmann::json local);
  // POST /api/v1/services/{s}/clear on any replica (`who` is an approver): the escalation is
  // removed from etcd with who cleared it (the owner clears its own within half a second), and
  // cleared here. 409 when it is escalated neither in etcd nor here; 503 without etcd.
  boost::asio::awaitable<HttpRes> clear(std::string service, std::string who, std::string client);
  // People's silences and releases marked bad, through any replica: kept in etcd (P/silences/<id>,
  // P/bad/<service>/<release>), so that whichever replica owns a service, now or after a
  // take-over, honours them; every replica reads them about once a second. 503 without etcd:
  // nothing is made. A live release marked bad is proposed for rollback by the owner only.
  boost::asio::awaitable<HttpRes> add_silence(Silence s);
  boost::asio::awaitable<HttpRes> expire_silence(std::string id, std::string who, std::string client);
  boost::asio::awaitable<HttpRes> mark_bad(size_t service, const config::Approver* who, std::string release, policy::Severity severity,
                                           std::string reason, std::string client);
  bool owns(const std::string& service) const { return owns_service(service); }
  // A reload (its ha block unchanged): the approvers and authority of the new config, which must
  // outlive the node.
  void set_config(const config::Config& config) { config_ = &config; }

 private:
  void on_change(int shard, std::int64_t fence, const std::string& why);
  boost::asio::awaitable<void> take_over(int shard, std::int64_t fence);
  // The owner's side of the shared proposals: each created or changed one is put in etcd (in
  // order, by one writer); the votes kept in etcd are counted every half second.
  void mirror(const Proposal& p);
  boost::asio::awaitable<void> flush_mirror();
  boost::asio::awaitable<void> count_votes();
  boost::asio::awaitable<void> adopt_proposals(int shard, std::int64_t fence);
  bool owns_service(const std::string& service) const;
  // ha.md, late effects: an inherited action found not done that lands later.
  boost::asio::awaitable<void> watch_late_effect(size_t service, nlohmann::json record);

  boost::asio::io_context& ioc_;
  const config::Config* config_;
  config::Ha cfg_;
  Pipeline& pipeline_;
  Metrics& metrics_;
  std::unique_ptr<EtcdClient> etcd_;
  std::unique_ptr<Replica> replica_;
  std::unique_ptr<HaCoordinator> coordinator_;
  struct Mirrored {
    std::string key, value;
    int shard = 0;
    std::int64_t fence = 0;  // the owner key's create revision when the proposal changed
    std::string escalated = "";  // an escalation of this service: known to be in etcd once written
  };
  void share_escalation(const std::string& service, const std::string& why, const std::string& action_id);
  // The owner's side of a clear made through another replica: an escalation it shared that is no
  // longer in etcd was cleared by a person.
  boost::asio::awaitable<void> sync_escalations();
  // Silences and bad marks as kept in etcd, into the pipeline.
  boost::asio::awaitable<void> sync_shared();
  int rounds_ = 0;
  boost::asio::awaitable<void> adopt_escalations(int shard, std::int64_t fence);
  // Retention: the owner deletes the finished actions and closed proposals (and their votes) of
  // its services older than ha.retention, so that etcd holds a bounded history.
  boost::asio::awaitable<void> prune();
  std::set<std::string> escalations_shared_;  // services whose escalation this replica knows to be in etcd
  std::deque<Mirrored> mirror_queue_;
  bool flushing_ = false;
  std::set<std::pair<std::string, std::string>> counted_;  // (proposal, approver) votes applied here
  std::multiset<int> taking_over_;  // shards whose take-over runs (not handed over meanwhile)
  bool resigning_ = false;
  bool started_ = false;
  // What the API shows of the other replicas, as last read from etcd (at most once a second).
  struct Cached {
    std::vector<KeyValue> kvs;
    std::string error;  // the last read failed: the kvs are older
    std::chrono::steady_clock::time_point at{};
    bool reading = false;
  };
  boost::asio::awaitable<void> refresh(Cached& c, const std::string& prefix);
  Cached proposals_cache_, owners_cache_, escalations_cache_, actions_cache_;
  net::Lifetime life_;  // take-overs
  net::Lifetime resign_life_;  // not ended by stop(): the resign must reach etcd
};

}  // namespace lastgood::watchdog::ha
