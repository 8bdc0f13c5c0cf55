#pragma once
// The fenced intent (ha.md, "Fenced intent"): before action_started is written, the owner commits
// in one etcd transaction that it still owns the shard under its fence and lease, that no action
// of the service is active, that the service is not escalated (by any replica), and that the
// service's state is the one it decided on; and writes the
// intent, the active marker and the new state. The transaction's revision is the action's token
// T, strictly increasing across owners. If it fails, the replica does not act.
#include <cstdint>
#include <optional>
#include <string>

#include "watchdog/ha/etcd.hpp"
#include "watchdog/ha/placement.hpp"

namespace lastgood::watchdog::ha {

struct FencedIntent {
  std::string service;
  std::string action_id;
  int shard = 0;
  std::int64_t fence = 0;      // the owner key's create revision (this replica's epoch)
  std::int64_t lease = 0;      // this replica's lease: the owner key must still be on it
  std::int64_t state_mod = 0;  // the mod revision of the service's state when decided; 0: absent
  std::string record;          // P/actions/<id>: what is about to be done (JSON, ≤ 16 KiB)
  std::string state;           // P/svc/<s>/state after it (JSON, ≤ 4 KiB)
  // For an approved proposal: its key's mod revision when approved (it must not have changed).
  std::optional<std::int64_t> proposal_mod;
  std::string proposal_id;
};

Txn intent_txn(const Keys& keys, const FencedIntent& intent);

// action_started is durable: the record becomes running (state "running"), only while this
// replica still owns the shard under the same fence and lease and the record is the one it wrote
// (mod revision == record_mod). An intent never marked running never touched the target.
Txn running_txn(const Keys& keys, const FencedIntent& intent, std::int64_t record_mod, const std::string& record);

// The end of an action: the record replaced by its outcome and the active marker removed, only
// if the record is still the one this replica wrote last (mod revision == record_mod).
Txn finish_txn(const Keys& keys, const std::string& service, const std::string& action_id, std::int64_t record_mod, const std::string& outcome);

// The end of an action that never ran (an intent never marked running): as finish_txn, and the
// service's state loses its `last` action when it is this one (state_mod: the state's mod
// revision as read, 0 when absent; new_state: the state to put, empty to leave it), so that an
// action that never ran does not count for the cooldown.
Txn never_ran_txn(const Keys& keys, const std::string& service, const std::string& action_id, std::int64_t record_mod, const std::string& outcome,
                  std::int64_t state_mod, const std::string& new_state);

}  // namespace lastgood::watchdog::ha
