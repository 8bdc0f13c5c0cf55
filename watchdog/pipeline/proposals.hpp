#pragma once
// Rollbacks awaiting approval: creation (one per breach), votes under the authority matrix with
// a quorum of distinct approvers, expiry, staleness when the live release moves on, and the
// states a proposal goes through. It records every step and returns what follows from it ("run
// this rollback"), never running anything itself.
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "policy/types.hpp"
#include "watchdog/pipeline/clock.hpp"
#include "watchdog/pipeline/recorder.hpp"
#include "watchdog/state/events.hpp"
#include "watchdog/state/ledger.hpp"

namespace lastgood::watchdog {

struct Proposal {
  struct Vote {
    std::string approver, role, comment;
    policy::TimePoint at;
  };
  std::string id;
  policy::Decision decision;
  policy::TimePoint created_at, expires_at;
  ProposalState state = ProposalState::pending;
  int quorum = 1;
  std::vector<Vote> approvals, rejections;
  bool secondary_open = false;             // the secondary authority may approve too (noticed once)
  policy::TimePoint last_reminded{};       // the last reminder (remind_every)
  // `authority`: to say who may approve and from when (null: not said).
  nlohmann::json to_json(const policy::Authority* authority = nullptr) const;
};

// What a vote needs to know of the proposal's service now.
struct ServiceFacts {
  std::optional<std::string> live;  // the live release, when known
  bool escalated = false;
  std::string escalation;
  bool can_act = false;  // it has an action and none is running
};

enum class VoteStatus {
  counted,        // an approval below quorum
  duplicate,      // the same approver again: counted once
  rejected,       // the proposal is rejected
  execute,        // quorum reached: run the rollback (VoteOutcome::proposal)
  cannot_record,  // the ledger takes no entries: no vote is taken
  unauthorized,   // no or unknown token
  unknown,        // no such proposal
  forbidden,      // no role allowed for its severity
  escalated,      // the service is escalated: clear it first
  not_pending,    // stale, expired, decided already
  cannot_act,     // approved, but no action or one running: failed
};
struct VoteOutcome {
  VoteStatus status;
  const Proposal* proposal = nullptr;  // when there is one
  std::string error;                   // for the refusals
};

class Proposals {
 public:
  using Facts = std::function<ServiceFacts(const std::string& service)>;
  Proposals(Recorder& rec, const Clock& clock, const std::map<policy::Severity, policy::Authority>& authority, Ids& ids, Notify notify);

  // A proposal for `d`, waiting until now + approval_timeout. nullptr when it could not be
  // recorded (not recorded, not proposed: the breach is decided again later).
  const Proposal* create(const policy::Decision& d, policy::Duration approval_timeout);
  // The proposal that still waits for, or runs, the rollback of this breach (same service and
  // `from`), if any: a breach is proposed or executed once.
  const Proposal* open_for(const std::string& service, const std::optional<std::string>& from) const;
  const Proposal* find(const std::string& id) const;
  // Records a proposal's new state ("" id: nothing).
  void set_state(const std::string& id, ProposalState s);
  // Pending proposals past their time expire (recorded and noticed); true when any did.
  bool expire(policy::TimePoint now);
  // Pending proposals of `service` whose `from` is no longer live become stale.
  void mark_stale(const std::string& service, const std::string& live);
  // The role under which `who` may decide a proposal of `severity` made at `created_at`, now: one of
  // the severity's roles, or of its secondary roles once `secondary.after` has passed; "" when none.
  std::string role_for(const config::Approver& who, policy::Severity severity, policy::TimePoint created_at) const;
  const policy::Authority* authority(policy::Severity s) const {
    auto it = authority_->find(s);
    return it == authority_->end() ? nullptr : &it->second;
  }
  // Pending proposals: the secondary authority joins after `secondary.after` (recorded, noticed
  // once), and the pending notice is sent again every `remind_every`.
  void remind(policy::TimePoint now);
  // A person's vote (`who` null: no valid token). Every attempt is recorded as approval_attempt.
  VoteOutcome vote(const std::string& id, const config::Approver* who, bool approve, const std::string& comment, const std::string& source,
                   const Facts& facts);

  // Replay: proposal_created, proposal_vote, proposal_state and proposal_expired entries.
  void replay(Event type, const LedgerEntry& e);
  // After replay: approved or executing proposals whose action_started is not in the ledger.
  std::vector<std::string> unstarted(const std::set<std::string>& started) const;
  // A reload: the authority matrix of the new config (kept alive by the caller).
  void set_authority(const std::map<policy::Severity, policy::Authority>& a) { authority_ = &a; }
  // Keeps the pending ones and the last closed ones (at most kKept in all).
  void trim();
  static constexpr std::size_t kKept = 200;

  int pending() const;
  const std::deque<Proposal>& all() const { return proposals_; }
  // Called with each service's number of pending proposals whenever a state changes (the gauge).
  std::function<void(const std::string& service, int pending)> on_pending;
  // Called when a proposal is created or changes state (several replicas: mirrored to etcd).
  std::function<void(const Proposal&)> on_change;
  // A proposal made by another replica that owned the service before (ha.md, take-over): pending
  // here, its votes counted again from where they are kept. nullptr: known already, or not recorded.
  const Proposal* adopt(Proposal p, const std::string& from_replica);

 private:
  Proposal* get(const std::string& id);
  void publish();

  Recorder& rec_;
  const Clock& clock_;
  const std::map<policy::Severity, policy::Authority>* authority_;
  Ids& ids_;
  Notify notify_;
  std::deque<Proposal> proposals_;
};

}  // namespace lastgood::watchdog
