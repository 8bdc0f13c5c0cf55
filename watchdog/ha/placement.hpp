#pragma once
// Where services and keys live when several replicas share the work (ha.md): a service's shard,
// the order in which replicas campaign for a shard (rendezvous hashing over the members), and the
// etcd keys under /lastgood/<cluster>/. Pure functions: no I/O, no clock.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lastgood::watchdog::ha {

// FNV-1a, 64 bits: stable across builds and machines (std::hash is not).
std::uint64_t fnv1a64(std::string_view data);

// The shard of a service: fnv1a64(service) mod shards.
int shard_of(std::string_view service, int shards);

// The members in the order they campaign for `shard`: highest fnv1a64(shard ‖ replica) first
// (ties by id). A member of rank r waits r × retry before campaigning; only the transaction
// decides ownership, so a disagreement on the member list costs time, never a second owner.
std::vector<std::string> campaign_order(int shard, std::vector<std::string> members);
// This replica's rank in that order (members.size() when it is not a member).
std::size_t rank_of(int shard, const std::string& replica, const std::vector<std::string>& members);

// The etcd keys of one cluster (ha.md, "Where state lives").
class Keys {
 public:
  explicit Keys(const std::string& cluster) : p_("/lastgood/" + cluster + "/") {}
  const std::string& prefix() const { return p_; }
  std::string members() const { return p_ + "members/"; }
  std::string member(const std::string& replica) const { return members() + replica; }
  std::string owner(int shard) const { return p_ + "shard/" + std::to_string(shard) + "/owner"; }
  std::string service_state(const std::string& service) const { return p_ + "svc/" + service + "/state"; }
  std::string service_active(const std::string& service) const { return p_ + "svc/" + service + "/active"; }
  std::string action(const std::string& id) const { return p_ + "actions/" + id; }
  // While present, the service is escalated: no replica acts on it (the intent compares it absent).
  std::string escalations() const { return p_ + "escalations/"; }
  std::string escalation(const std::string& service) const { return escalations() + service; }
  // Who cleared the service's last escalation, through which replica.
  std::string cleared(const std::string& service) const { return p_ + "cleared/" + service; }
  std::string proposal(const std::string& id) const { return p_ + "proposals/" + id; }
  // People's silences, and releases marked bad (service/release), shared by every replica.
  std::string silences() const { return p_ + "silences/"; }
  std::string silence(const std::string& id) const { return silences() + id; }
  std::string bad() const { return p_ + "bad/"; }
  std::string bad_mark(const std::string& service, const std::string& release) const { return bad() + service + "/" + release; }
  std::string votes(const std::string& proposal) const { return p_ + "votes/" + proposal + "/"; }
  std::string vote(const std::string& proposal, const std::string& approver) const { return votes(proposal) + approver; }

 private:
  std::string p_;
};

}  // namespace lastgood::watchdog::ha
