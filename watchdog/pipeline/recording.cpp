#include "watchdog/pipeline/recording.hpp"

#include <sys/statvfs.h>

#include <spdlog/spdlog.h>

namespace lastgood::watchdog {

using nlohmann::json;

bool Recording::record(Event type, const std::string& service, json data) {
  if (!ledger_) return false;
  // Transitions are evidence and come in volume (10 000 services start at once): they are synced
  // with the next durable entry instead of one fdatasync each. Everything acted on is durable.
  const auto sync = type == Event::transition ? Ledger::Sync::deferred : Ledger::Sync::now;
  const auto at = clock_.now();
  auto r = ledger_->try_append(std::string(name(type)), service, std::move(data), ms(at), sync);
  if (!r) {
    ++dropped_;
    if (writable_) {
      metrics_.internal_error("ledger");
      stop_recording(r.error, at);
      spdlog::error("cannot record: {}; lastgood holds every action and verification until the ledger takes entries again "
                    "(probing goes on; /readyz answers 503; retried every second)",
                    r.error);
    }
    return false;
  }
  const auto& e = *r.entry;
  metrics_.ledger_entries(1);
  if (auto id = incidents_.observe(type, e.service, e.ts_ms, e.data))
    if (auto err = incidents_.write(*id); !err.empty()) spdlog::error("incident {}: {}", *id, err);
  appended(e);
  return true;
}

void Recording::appended(const LedgerEntry& e) {
  // The entry is recorded whatever the checkpoint makes of it: a fold that fails (a bug) only
  // stops rotation, since a snapshot from it could not be trusted; the ledger goes on growing.
  try {
    if (replay_reads(e.type, e.data)) checkpoint_.feed(e);
  } catch (const std::exception& ex) {
    if (!checkpoint_failed_) {
      metrics_.internal_error("ledger_rotation");
      spdlog::error("ledger: entry {} ({}) could not be folded into the next snapshot ({}); segments are not rotated until lastgood restarts", e.seq,
                    e.type, ex.what());
    }
    checkpoint_failed_ = true;
  }
  rotate_if_due();
}

void Recording::rotate_if_due() {
  if (!ledger_ || checkpoint_failed_ || !ledger_->rotation_due()) return;
  // The snapshot is of everything up to this entry; the rotation fails as a whole or not at all,
  // and a failure leaves the ledger appending where it was (retried later): recording goes on.
  auto rot = ledger_->rotate(checkpoint_.snapshot(), ms(clock_.now()));
  if (!rot) {
    metrics_.internal_error("ledger_rotation");
    spdlog::error("{} (recording goes on in the active segment; retried later)", rot.error);
    return;
  }
  metrics_.ledger_entries(1);
}

void Recording::stop_recording(const std::string& why, policy::TimePoint at) {
  writable_ = false;
  error_ = why;
  unwritable_since_ = last_retry_ = at;
  metrics_.ledger_writable(false);
  if (on_change) on_change(false);
}

std::optional<policy::Duration> Recording::retry(policy::TimePoint t) {
  if (!ledger_ || t - last_retry_ < std::chrono::seconds(1)) return std::nullopt;
  last_retry_ = t;
  // A full disk is found before an append fails: an append may still fit in the slack of the
  // file's last block, and the next one (the action's start, or its end) not. Below the reserve,
  // lastgood holds as if the ledger had failed.
  struct statvfs st {};
  if (::statvfs(state_dir_.c_str(), &st) == 0) {
    const auto free_bytes = static_cast<unsigned long long>(st.f_bavail) * st.f_frsize;
    if (free_bytes < kDiskReserve) {
      const std::string low = "state_dir " + state_dir_ + " has " + std::to_string(free_bytes) + " bytes free (lastgood keeps " +
                              std::to_string(kDiskReserve / 1024) + " KiB for what it must record)";
      if (writable_) {
        stop_recording(low, t);
        spdlog::error("cannot record: {}; lastgood holds every action and verification until there is room again "
                      "(probing goes on; /readyz answers 503; checked every second)",
                      low);
      } else {
        error_ = low;
      }
      return std::nullopt;
    }
  }
  if (writable_) return std::nullopt;
  const auto lost = dropped_;
  auto r = ledger_->try_append(std::string(name(Event::ledger_writable)), "",
                               {{"unwritable_since", ms(unwritable_since_)}, {"entries_lost", lost}, {"error", error_}}, ms(t));
  if (!r) {
    error_ = r.error;
    return std::nullopt;
  }
  metrics_.ledger_entries(1);
  appended(*r.entry);
  writable_ = true;
  dropped_ = 0;
  metrics_.ledger_writable(true);
  const auto outage = std::chrono::duration_cast<policy::Duration>(t - unwritable_since_);
  spdlog::warn("ledger writable again after {:.1f}s ({} entries could not be recorded meanwhile); lastgood acts again",
               std::chrono::duration<double>(t - unwritable_since_).count(), lost);
  error_.clear();
  if (on_change) on_change(true);
  return outage;
}

void Recording::flush_unauthenticated(policy::TimePoint now) {
  if (unauth_.dropped) flush_unauthenticated(ms(now) / 60'000);
}

void Recording::flush_unauthenticated(long long minute) {
  if (minute == unauth_.minute) return;
  if (unauth_.dropped && writable_)
    record(Event::unauthenticated_dropped, "",
           {{"minute_start", unauth_.minute * 60'000}, {"dropped", unauth_.dropped}, {"clients", unauth_.per_client.size()},
            {"why", "more than " + std::to_string(kUnauthPerMinute) + " a minute, or " + std::to_string(kUnauthPerClient) +
                        " from one client, without a valid token: counted, not recorded one by one"}});
  unauth_ = UnauthBudget{minute, 0, {}, 0};
}

bool Recording::record_unauthenticated(Event type, const std::string& service, const std::string& client, json data) {
  flush_unauthenticated(ms(clock_.now()) / 60'000);
  auto it = unauth_.per_client.find(client);
  if (unauth_.total >= kUnauthPerMinute || (it != unauth_.per_client.end() && it->second >= kUnauthPerClient) ||
      (it == unauth_.per_client.end() && unauth_.per_client.size() >= 4096)) {
    ++unauth_.dropped;
    return false;
  }
  ++unauth_.per_client[client];
  ++unauth_.total;
  data["source"] = client;
  return record(type, service, std::move(data));
}

}  // namespace lastgood::watchdog
