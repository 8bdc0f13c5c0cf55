#pragma once
// The pipeline's Recorder over the ledger. When an append fails, or state_dir has less free
// space than kDiskReserve, lastgood stops acting (decisions become "hold: cannot record",
// /readyz answers 503) while probing goes on; one entry a second is tried, and the first that
// goes in says how long recording stopped and how many entries were lost. Every entry also
// updates the incident records. Entries on behalf of callers without a valid token are bounded.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "watchdog/metrics.hpp"
#include "watchdog/pipeline/checkpoint.hpp"
#include "watchdog/pipeline/clock.hpp"
#include "watchdog/pipeline/recorder.hpp"
#include "watchdog/state/incidents.hpp"
#include "watchdog/state/ledger.hpp"

namespace lastgood::watchdog {

class Recording final : public Recorder {
 public:
  Recording(std::string state_dir, Metrics& metrics, Incidents& incidents, const Clock& clock)
      : state_dir_(std::move(state_dir)), metrics_(metrics), incidents_(incidents), clock_(clock) {}
  void attach(Ledger& ledger) { ledger_ = &ledger; }
  // The fold a ledger snapshot is made from (checkpoint.hpp): fed each entry replay reads at
  // open (by the pipeline) and each entry appended (here). When the active segment is full, the
  // next append is followed by a rotation (Ledger::rotate) with its snapshot.
  Checkpoint& checkpoint() { return checkpoint_; }
  // Rotates when the active segment is full (after each append, and at start once replayed: a
  // ledger that grew past a segment under an older version, or with rotation off, is sealed
  // before anything else is appended).
  void rotate_if_due();

  bool record(Event type, const std::string& service, nlohmann::json data) override;
  // At most kUnauthPerMinute entries a minute, kUnauthPerClient of them from one client; the
  // rest are counted and summed up in one `unauthenticated_dropped` entry when the minute is over.
  bool record_unauthenticated(Event type, const std::string& service, const std::string& client, nlohmann::json data) override;
  bool writable() const override { return writable_; }
  const std::string& error() const override { return error_; }
  static constexpr int kUnauthPerMinute = 60, kUnauthPerClient = 10;
  static constexpr unsigned long long kDiskReserve = 64 * 1024;

  // Once a second: checks the free space and, while not writable, tries an entry. Returns how
  // long recording had stopped when it resumes at this call.
  std::optional<policy::Duration> retry(policy::TimePoint now);
  // Writes the summary of a busy minute once it is over.
  void flush_unauthenticated(policy::TimePoint now);
  // Called when recording stops (false) and resumes (true).
  std::function<void(bool writable)> on_change;

 private:
  void stop_recording(const std::string& why, policy::TimePoint at);
  void appended(const LedgerEntry& e);
  void flush_unauthenticated(long long minute);

  std::string state_dir_;
  Metrics& metrics_;
  Incidents& incidents_;
  const Clock& clock_;
  Ledger* ledger_ = nullptr;
  Checkpoint checkpoint_;
  bool checkpoint_failed_ = false;
  bool writable_ = true;
  std::string error_;
  std::uint64_t dropped_ = 0;  // entries that could not be recorded during the current outage
  policy::TimePoint unwritable_since_{}, last_retry_{};
  struct UnauthBudget {
    long long minute = -1;
    int total = 0;
    std::map<std::string, int> per_client;
    std::uint64_t dropped = 0;
  } unauth_;
};

}  // namespace lastgood::watchdog
