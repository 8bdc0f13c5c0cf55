#pragma once
// Silences and maintenance windows (design.md, HTTP surface and Config additions): while a
// service is silenced everything is still observed and recorded, but a breach's decision is
// `hold: silenced until T by NAME` (no proposal, no action, no breach notice). A silence ends on
// time or when a person expires it; a breach still firing then is decided again (the pipeline).
// Silences made over the API live in the ledger (silence_added, silence_expired) and come back
// on replay; maintenance windows come from the config. Pure: time is passed in.
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "policy/types.hpp"
#include "watchdog/state/events.hpp"
#include "watchdog/state/ledger.hpp"

namespace lastgood::watchdog {

struct Silence {
  std::string id;
  std::vector<std::string> services;
  policy::TimePoint starts_at, ends_at;
  std::string by;       // the approver who made it, or "config" for a maintenance window
  std::string comment;
  std::string source;   // the client address (API) or the config file
  bool from_config = false;
  std::optional<policy::TimePoint> expired_at;  // ended early by a person
  std::string expired_by;
  bool shared = false;  // several replicas: as kept in etcd
  bool active(policy::TimePoint now) const { return !expired_at && now >= starts_at && now < ends_at; }
  bool covers(const std::string& service) const;
  nlohmann::json to_json(policy::TimePoint now) const;
  // As kept in etcd (several replicas), and back; nullopt for a record that is not one.
  nlohmann::json to_record() const;
  static std::optional<Silence> from_record(const nlohmann::json& d);
};

class Silences {
 public:
  static constexpr std::size_t kKeptEnded = 100;  // ended silences kept for the API

  // The active silence of `service` at `now` that ends last; nullptr when none.
  const Silence* active(const std::string& service, policy::TimePoint now) const;
  void add(Silence s);
  // A person ends a silence early. nullptr when there is no such silence; a maintenance window
  // from the config is ended only by editing the config.
  const Silence* find(const std::string& id) const;
  bool expire(const std::string& id, const std::string& by, policy::TimePoint now);
  // The maintenance windows of the config (replacing the previous set: a reload).
  void set_maintenance(std::vector<Silence> windows);
  // Several replicas: the silences kept in etcd (replacing the previous set, and any of this
  // replica's own with the same id).
  void set_shared(std::vector<Silence> shared);
  // Active and upcoming first, then the recently ended, newest first.
  nlohmann::json list(policy::TimePoint now) const;
  // Replay: silence_added and silence_expired entries.
  void replay(Event type, const LedgerEntry& e);
  const std::vector<Silence>& all() const { return silences_; }

 private:
  void trim(policy::TimePoint now);
  std::vector<Silence> silences_;
};

// RFC 3339 in UTC to the second, as silences and decisions show times.
std::string format_time(policy::TimePoint t);
}  // namespace lastgood::watchdog
