#pragma once
// The fenced intent (ha.md, "Fenced intent"): before action_started is written, the owner commits
// in one etcd transaction that it still owns the shard under its fence and lease, that no action
// of the service is active, and that the service's state is the one it decided on; and writes the
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

// The end of an action: the record replaced by its outcome and the active marker removed, only
// if the record is still the one written by the intent (mod revision == token).
Txn finish_txn(const Keys& keys, const std::string& service, const std::string& action_id, std::int64_t token, const std::string& outcome);

}  // namespace lastgood::watchdog::ha
