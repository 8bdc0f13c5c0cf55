#pragma once
// Notifications: `webhook` (JSON with the event, service, severity, trigger, decision, evidence,
// proposal id and links) and `slack` (a Slack-compatible incoming-webhook payload). Each entry's
// `events` filters what it gets. Delivery is asynchronous with exponential backoff and never
// blocks the pipeline; every queued notice is in the ledger until delivered or given up, so a
// restart resumes what was pending. Webhook URLs can be secrets: they never reach logs or the ledger.
#include <functional>
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

  // Resumes deliveries the ledger shows as queued and not finished.
  void replay(const std::vector<LedgerEntry>& entries);
  // An event happened: queue a notice for every matching target.
  void notify(const std::string& event, const std::string& service, const nlohmann::json& details);
  void set_base_url(std::string url) { base_url_ = std::move(url); }
  // Cancels deliveries in flight: they stay queued in the ledger and are sent after a restart.
  void stop() {
    stopped_ = true;
    life_.end();
  }

  // Backoff between attempts (tests shorten it).
  std::chrono::milliseconds first_backoff{1000};
  int max_attempts = 8;

 private:
  boost::asio::awaitable<void> deliver(std::string id, size_t target, nlohmann::json body, std::string service);
  nlohmann::json payload(size_t target, const std::string& event, const std::string& service, const nlohmann::json& details) const;

  boost::asio::io_context& ioc_;
  const config::Config& cfg_;
  Record record_;
  std::string base_url_;
  std::uint64_t next_ = 1;
  bool stopped_ = false;
  net::Lifetime life_;  // last: deliveries in flight are cancelled first
};

}  // namespace lastgood::watchdog
