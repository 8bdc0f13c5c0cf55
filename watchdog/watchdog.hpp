#pragma once
// The running watchdog: config -> probes on the scheduler -> state and metrics -> HTTP server.
// The pipeline is the only place that wires probes, policy and actions together.
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/steady_timer.hpp>

#include "config/config.hpp"
#include "probes/probe.hpp"
#include "watchdog/api/auth.hpp"
#include "watchdog/api/auth_limit.hpp"
#include "watchdog/state/ledger.hpp"
#include "watchdog/metrics.hpp"
#include "watchdog/pipeline/pipeline.hpp"
#include "watchdog/scheduler.hpp"
#include "watchdog/api/server.hpp"
#include "watchdog/ha/node.hpp"

namespace lastgood::watchdog {

struct WatchdogOptions {
  bool dry_run = false;
  // Called on the loop after every probe run (the demo prints from here).
  std::function<void(const probes::ProbeResult&)> on_result;
  // Called after every durable ledger entry (the demo tells its story from here).
  std::function<void(const LedgerEntry&)> on_ledger;
};

class Watchdog {
 public:
  Watchdog(boost::asio::io_context& ioc, std::shared_ptr<const config::Config> cfg, WatchdogOptions opts = {});
  ~Watchdog();

  // Prepares the state dir, binds the server and starts every probe. Throws std::runtime_error
  // with a clear message when it cannot (state dir not writable, address in use).
  void start();
  // Stops probing, deciding and the API; with replicas, resigns (the lease revoked: another
  // replica takes over at once). busy() is true while what stop() let finish still runs.
  void stop();
  std::size_t busy() const;
  unsigned short port() const;

  // Reads the config file again and applies it (design.md: SIGHUP and POST /-/reload): services
  // added, removed or changed, keeping every state. An invalid file, or one that changes what
  // only a restart applies, changes nothing. `via`: who asked (recorded). Returns the HTTP status
  // and body: 200 with what changed; 400 with the problems; 409 when it cannot be applied now.
  // Reads the config file again on a worker thread (a large or hostile file never holds the loop:
  // probes stay on schedule while it is read and checked), then applies it on the loop. One at a
  // time: a reload asked for while one runs is refused (409).
  boost::asio::awaitable<std::pair<int, nlohmann::json>> reload(std::string via);
  // The same, detached (SIGHUP): supervised, its outcome logged and recorded.
  void reload_detached(std::string via);
  // POST /-/reload's answer.
  boost::asio::awaitable<HttpRes> reload_response(std::string via);

  // The HTTP API over the current state (api/routes.cpp); votes and clears write the ledger.
  HttpRes handle(const HttpReq& req);
  const Metrics& metrics() const { return metrics_; }
  Pipeline& pipeline() { return pipeline_; }
  Ledger* ledger() { return ledger_.get(); }

 private:
  struct ProbeState {
    size_t service_index;
    size_t probe_index;  // within the service
    std::string service;
    const config::Probe* spec;
    Metrics::ProbeHandles handles;
    std::optional<probes::ProbeResult> last;
    std::uint64_t runs = 0;
    bool retired = false;  // removed by a reload
  };
  void add_probes(size_t si);
  std::pair<int, nlohmann::json> apply_reload(const config::LoadResult& res, const std::string& via);
  std::pair<int, nlohmann::json> refuse_reload(int status, const std::string& via, const std::string& why, nlohmann::json errors = nlohmann::json());
  bool reloading_ = false;
  boost::asio::awaitable<void> reload_logged(std::string via);
  net::Lifetime reloads_;  // a reload under way ends with the watchdog
  void on_result(size_t index, probes::ProbeResult&& r, double lateness_s);
  void schedule_tick();
  bool ready() const;
  nlohmann::json services_json() const;
  // The public status page's view (api/status_page.hpp), from the config's status_page.
  nlohmann::json public_status(long long now_ms) const;
  // The status page as last made, for a second: anyone may ask for it, as often as they like.
  struct StatusCache {
    long long at_ms = 0;
    std::string json, html;
  } status_cache_;

  boost::asio::io_context& ioc_;
  std::shared_ptr<const config::Config> cfg_;
  WatchdogOptions opts_;
  Metrics metrics_;
  Scheduler scheduler_;
  Pipeline pipeline_;
  Approvers approvers_;
  std::unique_ptr<StateLock> lock_;
  std::unique_ptr<Ledger> ledger_;
  boost::asio::steady_timer tick_timer_;
  size_t tick_slice_ = 0;
  std::vector<ProbeState> probes_;
  std::vector<std::vector<size_t>> probes_of_;  // per service: its probes' indices in probes_ (and the scheduler)
  std::vector<std::shared_ptr<const config::Config>> applied_;  // configs replaced by a reload: parts still point into them
  std::unique_ptr<Server> server_;
  std::unique_ptr<ha::Node> ha_;  // with an `ha` block only
  bool state_dir_ok_ = false;
  // Failed authentications per (client, presented token): approvals and clears in one budget,
  // the alert intake in its own.
  AuthLimiter approver_failures_, alert_failures_;
  bool alertmanager_token_ok(const std::string& authorization) const;
  bool host_allowed(const std::string& host) const;
  // Last member: destroyed first, so a load still running is joined before the rest goes.
  boost::asio::thread_pool loader_{1};
};

// Raises the open-files soft limit to the hard limit; returns the limit now in force.
std::uint64_t raise_open_files_limit();

}  // namespace lastgood::watchdog
