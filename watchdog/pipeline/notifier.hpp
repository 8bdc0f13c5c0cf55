#pragma once
// Notifications: `webhook` (JSON with the event, service, severity, trigger, decision, evidence,
// proposal id and links), `slack` (a Slack-compatible incoming-webhook payload) and `pagerduty`
// (the Events API v2: trigger on a breach or a proposal, acknowledge on an approval, resolve on
// verified recovery, one dedup_key per incident). Each entry's `events`, `severities` and
// `services` filter what it gets. Delivery is asynchronous with exponential backoff and never
// blocks the pipeline; every queued notice is in the ledger until delivered or given up, so a
// restart resumes what was pending. Webhook URLs can be secrets: they never reach logs or the ledger.
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "net/supervise.hpp"
#include "config/config.hpp"
#include "watchdog/state/events.hpp"
#include "watchdog/state/ledger.hpp"

namespace lastgood::watchdog {

class Notifier {
 public:
  using Record = std::function<void(Event type, const std::string& service, nlohmann::json data)>;
  Notifier(boost::asio::io_context& ioc, const config::Config& cfg, Record record);

  // Resumes deliveries the ledger shows as queued and not finished: replay_entry() for each entry
  // in order (only the queued ones are held, and only until delivered), then replay_done().
  void replay(const std::vector<LedgerEntry>& entries);
  // `carried`: an entry a ledger snapshot carried forward (a notice still queued); the incidents
  // PagerDuty knows come from the snapshot itself (restore_open).
  void replay_entry(const LedgerEntry& e, bool carried = false);
  void replay_done();
  // Per service, the incident PagerDuty knows (dedup_key) and its severity, from the first
  // breach or proposal until verified recovery; rebuilt from the ledger on restart.
  struct Open {
    std::string key;
    std::string severity;
  };
  using OpenIncidents = std::map<std::string, Open>;
  // What replay rebuilds of them from one entry (a snapshot's checkpoint folds the same way).
  static void fold_open(OpenIncidents& open, const LedgerEntry& e);
  static nlohmann::json save_open(const OpenIncidents& open);
  static OpenIncidents load_open(const nlohmann::json& saved);  // throws std::runtime_error when malformed
  void restore_open(const nlohmann::json& saved) { open_ = load_open(saved); }
  // An event happened: queue a notice for every matching target.
  void notify(const std::string& event, const std::string& service, const nlohmann::json& details);
  void set_base_url(std::string url) { base_url_ = std::move(url); }
  // A reload: the targets of the new config (kept alive by the caller). Notices queued before it
  // go to the target they were made for, as it was configured then.
  void set_config(const config::Config& cfg) { cfg_ = &cfg; }
  // The incident a notice's `incident_id` (an action id, as the parts know it) belongs to.
  std::function<std::string(const std::string&)> incident_of;
  // Cancels deliveries in flight: they stay queued in the ledger and are sent after a restart.
  void stop() {
    stopped_ = true;
    life_.end();
  }

  // Backoff between attempts (tests shorten it).
  std::chrono::milliseconds first_backoff{1000};
  int max_attempts = 8;

 private:
  boost::asio::awaitable<void> deliver(std::string id, size_t target, std::shared_ptr<const config::Notify> where, nlohmann::json body,
                                       std::string service);
  nlohmann::json payload(size_t target, const std::string& event, const std::string& service, const nlohmann::json& details) const;
  // PagerDuty: the event action for a lastgood event ("" : not sent), and the body without the
  // routing key (added at delivery: the key is a secret and the body goes to the ledger).
  static std::string pagerduty_action(const std::string& event);
  nlohmann::json pagerduty(const std::string& action, const std::string& event, const std::string& service, const nlohmann::json& d,
                           const nlohmann::json& links, const std::string& text) const;
  OpenIncidents open_;
  struct Unsent {
    std::string service;
    nlohmann::json data;
  };
  std::map<std::string, Unsent> replay_pending_;  // notify_queued with no delivered or failed yet
  // PagerDuty deliveries go out one at a time, in order, per target (a resolve must not overtake
  // the trigger it resolves while that one is retried).
  struct Queued {
    std::string id;
    nlohmann::json body;
    std::string service;
    std::shared_ptr<const config::Notify> target;
  };
  std::map<size_t, std::deque<Queued>> ordered_;
  std::map<size_t, bool> draining_;
  void send(std::string id, size_t target, nlohmann::json body, std::string service);
  boost::asio::awaitable<void> drain(size_t target);
  std::string severity_of(const std::string& service, const nlohmann::json& details) const;

  boost::asio::io_context& ioc_;
  const config::Config* cfg_;
  Record record_;
  std::string base_url_;
  std::uint64_t next_ = 1;
  bool stopped_ = false;
  net::Lifetime life_;  // last: deliveries in flight are cancelled first
};

}  // namespace lastgood::watchdog
