#pragma once
// Rebuilding state from the ledger at start: releases and verified-good releases, cooldown and
// budget, proposals and their votes, escalations; and what a restart must finish: actions
// started and not finished (reconciled by observing, never re-run), rollbacks finished and not
// verified, approved proposals whose action never started. Every event type is handled here or
// named as carrying nothing to rebuild; a type this version does not know is damage.
#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "policy/deployment.hpp"
#include "policy/types.hpp"
#include "watchdog/pipeline/proposals.hpp"
#include "watchdog/state/ledger.hpp"

namespace lastgood::watchdog {

// Where replayed state goes, per service (the pipeline: its policies and services).
class ReplayTarget {
 public:
  virtual ~ReplayTarget() = default;
  virtual std::optional<std::size_t> service_index(const std::string& name) const = 0;
  virtual void release(std::size_t si, const std::string& id, std::optional<policy::TimePoint> deployed_at, policy::TimePoint at, bool migration) = 0;
  virtual void verified_good(std::size_t si, const std::string& id, policy::TimePoint at) = 0;
  // A decision that counts against cooldown and budget (not an execute: those count from their
  // action_started).
  virtual void decision(std::size_t si, policy::DecisionKind kind, policy::TimePoint at) = 0;
  virtual void rollback_started(std::size_t si, policy::TimePoint at) = 0;
  virtual void escalated(std::size_t si, const std::string& reason) = 0;
  virtual void cleared(std::size_t si) = 0;
  virtual void marked_bad(std::size_t si, const std::string& release, policy::BadMark mark) = 0;
  // silence_added and silence_expired (they may name services no longer in the config).
  virtual void silence(Event type, const LedgerEntry& e) = 0;
};

struct Replayed {
  struct Action {
    std::size_t service;
    nlohmann::json data;  // the action_started entry's data (action_reconciled's when it switched)
  };
  std::vector<Action> unfinished;  // started, never finished: reconcile
  std::vector<Action> unverified;  // finished ok (or reconciled as switched), not verified yet
  std::vector<std::string> unstarted_proposals;  // approved or executing, no action_started
  std::string damage;  // the first entry this version cannot read ("" when none)
};

// Replay one entry at a time, as the ledger is read (memory follows state, not history). After
// damage (a type this version does not know) the rest is not read.
//
// `carried`: an entry a ledger snapshot carried forward (checkpoint.hpp). The snapshot holds the
// services' state itself (releases, budget, escalation), so a carried entry rebuilds only what
// snapshots keep as entries: actions in flight or not yet verified, proposals, silences.
// `proposals` may be null (the checkpoint keeps proposals as entries).
class Replayer {
 public:
  Replayer(ReplayTarget& target, Proposals* proposals) : target_(target), proposals_(proposals) {}
  void feed(const LedgerEntry& e, bool carried = false);
  Replayed finish();
  bool damaged() const { return !out_.damage.empty(); }
  const std::string& damage() const { return out_.damage; }
  // What the caller could not read (a snapshot): damage, as an unknown entry is.
  void fail(std::string why) {
    if (out_.damage.empty()) out_.damage = std::move(why);
  }

  // For the checkpoint: the actions it must carry, and forgetting the started proposals no
  // snapshot carries any more.
  const std::map<std::string, Replayed::Action>& open_actions() const { return open_; }
  const std::map<std::string, Replayed::Action>& unverified_actions() const { return unverified_; }
  void keep_started(const std::set<std::string>& proposal_ids) {
    std::erase_if(started_proposals_, [&](const std::string& id) { return !proposal_ids.count(id); });
  }

 private:
  void service_entry(Event type, std::size_t si, const LedgerEntry& e, bool carried);
  ReplayTarget& target_;
  Proposals* proposals_;
  Replayed out_;
  std::map<std::string, Replayed::Action> open_;        // action id -> action_started
  std::map<std::string, Replayed::Action> unverified_;  // finished ok, not yet verified
  std::set<std::string> started_proposals_;             // proposals whose action_started is in the ledger
};

Replayed replay(const std::vector<LedgerEntry>& entries, ReplayTarget& target, Proposals& proposals);

}  // namespace lastgood::watchdog
