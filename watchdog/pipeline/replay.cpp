#include "watchdog/pipeline/replay.hpp"

#include <map>

namespace lastgood::watchdog {

using nlohmann::json;
using policy::DecisionKind;

void Replayer::service_entry(Event type, std::size_t si, const LedgerEntry& e, bool carried) {
  auto& target = target_;
  auto& open = open_;
  auto& unverified = unverified_;
  auto& started_proposals = started_proposals_;
  {
    const auto at = from_ms(e.ts_ms);
    const auto& d = e.data;
    switch (type) {
      case Event::release_observed: {
        const auto dep = d.contains("deployed_at") && d["deployed_at"].is_number()
                             ? std::optional<policy::TimePoint>(from_ms(d["deployed_at"].get<long long>()))
                             : std::nullopt;
        if (!carried) target.release(si, d.value("release", ""), dep, at, d.value("migration", false));
        break;
      }
      case Event::release_verified_good:
        if (!carried) target.verified_good(si, d.value("release", ""), at);
        break;
      case Event::decision:
        // An execute decision counts against cooldown and budget only once its action_started
        // is in the ledger: a crash between the two must not cost a whole cooldown (the breach
        // is decided again on fresh evidence).
        if (!carried && !d.value("shadow", false) && d.value("kind", "hold") != "execute")
          target.decision(si, d.value("kind", "hold") == "hold" ? DecisionKind::hold : DecisionKind::propose, at);
        break;
      case Event::action_started: {
        open[d.value("action_id", "")] = {si, d};
        if (!carried) target.rollback_started(si, at);
        const std::string via = d.value("via", "");
        if (via.rfind("proposal ", 0) == 0) started_proposals.insert(via.substr(9));
        break;
      }
      case Event::action_finished: {
        const std::string id = d.value("action_id", "");
        if (d.value("ok", false) && open.count(id)) {
          unverified[id] = open[id];
          // The kind made another release live than planned (a Firebase fallback or clone): that one is verified.
          if (d.contains("switched_to") && d["switched_to"].is_string()) unverified[id].data["to"] = d["switched_to"];
        }
        open.erase(id);
        break;
      }
      case Event::action_reconciled:
        open.erase(d.value("action_id", ""));
        if (d.value("switched", false)) unverified[d.value("action_id", "")] = {si, d};
        break;
      case Event::verification:
        unverified.erase(d.value("action_id", ""));
        break;
      case Event::escalated:
        if (!carried) target.escalated(si, d.value("reason", ""));
        unverified.erase(d.value("action_id", ""));
        break;
      case Event::cleared:
        if (!carried) target.cleared(si);
        break;
      case Event::release_marked_bad:
        if (!carried) target.marked_bad(si, d.value("release", ""), policy::BadMark{d.value("by", ""), d.value("reason", ""), at});
        break;
      default:
        break;
    }
  }
}

void Replayer::feed(const LedgerEntry& e, bool carried) {
  if (damaged()) return;
  auto* proposals = proposals_;
  auto& target = target_;
  {
    const auto type = parse_event(e.type);
    if (!type) {
      out_.damage = "entry " + std::to_string(e.seq) + " has the type \"" + e.type.substr(0, 64) +
                    "\", which this version of lastgood does not know (written by a newer version?)";
      return;
    }
    switch (*type) {
      case Event::proposal_created:
      case Event::proposal_vote:
      case Event::proposal_state:
      case Event::proposal_expired:
      case Event::proposal_reminded:
        if (proposals) proposals->replay(*type, e);
        break;
      case Event::release_observed:
      case Event::release_verified_good:
      case Event::decision:
      case Event::action_started:
      case Event::action_finished:
      case Event::action_reconciled:
      case Event::verification:
      case Event::escalated:
      case Event::cleared:
      case Event::release_marked_bad:
        if (const auto si = target.service_index(e.service)) service_entry(*type, *si, e, carried);  // else no longer in the config
        break;
      // Evidence and bookkeeping: nothing to rebuild from them (incidents and the notifier read
      // their own). No default: a new event must be placed here or above.
      case Event::transition:
      case Event::alert_received:
      case Event::approval_attempt:
      case Event::action_planned:
      case Event::action_refused:
      case Event::clear_refused:
      case Event::unauthenticated_dropped:
      case Event::notify_queued:
      case Event::notify_delivered:
      case Event::notify_failed:
      case Event::ledger_writable:
      case Event::ledger_repaired:
      case Event::ledger_keyed:
      case Event::ha_acquired:
      case Event::ha_lost:
      case Event::late_effect:
      case Event::rollback_requested:
      case Event::config_reloaded:
      // Restored by the pipeline before this replayer sees what follows it (checkpoint.hpp).
      case Event::snapshot:
        break;
      case Event::silence_added:
      case Event::silence_expired:
        target.silence(*type, e);
        break;
    }
  }
}

Replayed Replayer::finish() {
  if (damaged()) return std::move(out_);
  if (proposals_) out_.unstarted_proposals = proposals_->unstarted(started_proposals_);
  for (auto& [id, a] : open_) out_.unfinished.push_back(a);
  for (auto& [id, a] : unverified_) {
    a.data["action_id"] = id;
    out_.unverified.push_back(a);
  }
  if (proposals_) proposals_->trim();
  return std::move(out_);
}

Replayed replay(const std::vector<LedgerEntry>& entries, ReplayTarget& target, Proposals& proposals) {
  Replayer r(target, &proposals);
  for (const auto& e : entries) r.feed(e);
  return r.finish();
}

}  // namespace lastgood::watchdog
