#pragma once
// The ledger's vocabulary: every type of entry lastgood writes, as an enum with one name table.
// The writer, the replay, the incident records, the notifier's redelivery and the views all go
// through it, so a type cannot be misspelt on one side only; an entry whose type is not in the
// table is damage to replay, never skipped in silence. The names are the file format: a name
// never changes once released.
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace lastgood::watchdog {

enum class Event : std::uint8_t {
  transition,               // a trigger changed state (evidence; synced with the next durable entry)
  decision,                 // what the policy decided on a breach
  release_observed,         // the live release read from the deployment
  release_verified_good,    // a release held healthy for good_after
  alert_received,           // an Alertmanager alert taken as an external trigger
  proposal_created,         // a rollback awaiting approval
  proposal_vote,            // an approval or a rejection that counted
  proposal_state,           // a proposal's new state
  proposal_expired,         // no quorum in time
  approval_attempt,         // every attempt to vote, counted or not (names, never tokens)
  action_planned,           // a dry run's plan
  action_refused,           // the live release was no longer `from` before the switch
  action_started,           // durable before anything changes: never run twice
  action_finished,          // the action's outcome
  action_reconciled,        // an action started and not finished, observed after a restart
  verification,             // recovery verified, or not within verify.within
  escalated,                // no automatic action until a person clears it
  cleared,                  // a person cleared the escalation
  clear_refused,            // a clear without a valid token
  unauthenticated_dropped,  // the summary of attempts without a token beyond the per-minute bound
  notify_queued,            // a notice and its body, before the first attempt
  notify_delivered,
  notify_failed,
  ledger_writable,          // recording works again after an outage: how long, how much was lost
  ledger_repaired,          // a torn last line moved aside at open
  ledger_keyed,             // from here on, hashes are HMACs under the ledger key
  ha_acquired,              // several replicas: this replica owns a shard, under a fence
  ha_lost,                  // ... and no longer does (why)
  late_effect,              // an inherited action found not done took effect later (a frozen owner's late write)
  release_marked_bad,       // a person marked a release bad: never a rollback target again
  silence_added,            // a person silenced services until a time (no proposal or action meanwhile)
  silence_expired,          // a person ended a silence early
  proposal_reminded,        // a pending proposal's notice sent again (remind_every, or the secondary authority joined)
  rollback_requested,       // a person asked for a rollback or marked a live release bad (who, why; the proposal follows)
  config_reloaded,          // the config was read again and applied (what changed), or refused (the problems)
  snapshot,                 // the first entry of a ledger segment: the state replayed from every entry before it
};

inline constexpr std::array<std::string_view, 36> kEventNames = {
    "transition",      "decision",         "release_observed", "release_verified_good", "alert_received",  "proposal_created",
    "proposal_vote",   "proposal_state",   "proposal_expired", "approval_attempt",      "action_planned",  "action_refused",
    "action_started",  "action_finished",  "action_reconciled", "verification",         "escalated",       "cleared",
    "clear_refused",   "unauthenticated_dropped", "notify_queued", "notify_delivered",  "notify_failed",   "ledger_writable",
    "ledger_repaired", "ledger_keyed",     "ha_acquired",      "ha_lost",
    "late_effect",     "release_marked_bad", "silence_added",  "silence_expired",       "proposal_reminded", "rollback_requested",
    "config_reloaded", "snapshot"};
static_assert(kEventNames.size() == static_cast<std::size_t>(Event::snapshot) + 1, "one name per event");

// The enumerator a name table holds `text` for; nullopt when it holds none.
template <typename E, std::size_t N>
constexpr std::optional<E> parse_name(const std::array<std::string_view, N>& names, std::string_view text) {
  for (std::size_t i = 0; i < N; ++i)
    if (names[i] == text) return static_cast<E>(i);
  return std::nullopt;
}

constexpr std::string_view name(Event e) { return kEventNames[static_cast<std::size_t>(e)]; }
// The event a ledger entry's type names; nullopt for a type this version does not know.
constexpr std::optional<Event> parse_event(std::string_view type) { return parse_name<Event>(kEventNames, type); }

// A proposal's life (design.md, Core types).
enum class ProposalState : std::uint8_t { pending, approved, rejected, expired, stale, executing, executed, failed, verified, escalated };

inline constexpr std::array<std::string_view, 10> kProposalStateNames = {"pending", "approved", "rejected", "expired",  "stale",
                                                                         "executing", "executed", "failed", "verified", "escalated"};
static_assert(kProposalStateNames.size() == static_cast<std::size_t>(ProposalState::escalated) + 1, "one name per state");

constexpr std::string_view name(ProposalState s) { return kProposalStateNames[static_cast<std::size_t>(s)]; }
constexpr std::optional<ProposalState> parse_proposal_state(std::string_view s) { return parse_name<ProposalState>(kProposalStateNames, s); }
// A proposal that still blocks another for the same breach.
constexpr bool blocks_new_proposal(ProposalState s) { return s == ProposalState::pending || s == ProposalState::approved || s == ProposalState::executing; }

}  // namespace lastgood::watchdog
