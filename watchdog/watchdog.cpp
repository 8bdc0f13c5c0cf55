#include "watchdog/watchdog.hpp"
#include "watchdog/log_fields.hpp"
#include "net/conn_budget.hpp"


#include "watchdog/json_text.hpp"
#include "watchdog/kinds.hpp"
#include "watchdog/validate.hpp"

#include <set>

#include <arpa/inet.h>

#include <malloc.h>

#include "watchdog/api/page.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "net/supervise.hpp"

namespace lastgood::watchdog {

namespace asio = boost::asio;


Watchdog::Watchdog(boost::asio::io_context& ioc, std::shared_ptr<const config::Config> cfg, WatchdogOptions opts)
    : ioc_(ioc),
      cfg_(std::move(cfg)),
      opts_(std::move(opts)),
      scheduler_(ioc, [this](size_t i, probes::ProbeResult&& r, double late) { on_result(i, std::move(r), late); },
                 [this](size_t, int n) { metrics_.skipped_runs(n); }),
      pipeline_(ioc, *cfg_, metrics_, opts_.dry_run),
      approvers_(*cfg_),
      tick_timer_(ioc) {
  size_t total = 0;
  for (const auto& svc : cfg_->services) total += svc.probes.size();
  probes_.reserve(total);  // a ProbeState keeps the last result: doubling would leave up to half unused
  scheduler_.reserve(total);
  scheduler_.on_tick([this](double lag_s, size_t in_flight, size_t limit) { metrics_.loop_tick(lag_s, in_flight, limit); });
  for (size_t si = 0; si < cfg_->services.size(); ++si) add_probes(si);
  if (cfg_->ha) ha_ = std::make_unique<ha::Node>(ioc_, *cfg_, pipeline_, metrics_);
}

void Watchdog::add_probes(size_t si) {
  const auto& svc = *pipeline_.service(si).cfg;
  if (probes_of_.size() <= si) probes_of_.resize(si + 1);
  for (size_t pi = 0; pi < svc.probes.size(); ++pi) {
    const auto& p = svc.probes[pi];
    probes_of_[si].push_back(probes_.size());
    probes_.push_back(ProbeState{si, pi, svc.name, &p, metrics_.probe_handles(svc.name, p.name, p.kind), std::nullopt, 0});
    scheduler_.add(probes::make_probe(ioc_.get_executor(), svc.name, p));
  }
}

std::pair<int, nlohmann::json> Watchdog::refuse_reload(int status, const std::string& via, const std::string& why, nlohmann::json errors) {
  metrics_.config_reload(false, 0);
  nlohmann::json rec{{"ok", false}, {"via", via}, {"error", why}};
  if (!errors.is_null()) rec["errors"] = errors;
  pipeline_.record(Event::config_reloaded, "", rec);
  spdlog::error("reload ({}) refused: {}{}", via, why, errors.is_null() ? "" : ": " + errors.dump());
  nlohmann::json body{{"error", why}};
  if (!errors.is_null()) body["errors"] = errors;
  return {status, body};
}

asio::awaitable<std::pair<int, nlohmann::json>> Watchdog::reload(std::string via) {
  if (reloading_) {
    spdlog::warn("reload ({}) refused: a reload is already under way", via);
    co_return std::pair<int, nlohmann::json>{409, {{"error", "a reload is already under way: try again when it has finished"}}};
  }
  net::FlagGuard busy(reloading_);
  const std::string path = cfg_->source;
  spdlog::info("reload ({}): reading {} (probes keep running meanwhile)", via, path);
  // Read and checked on the loader thread; only the result comes back to the loop.
  auto load = [path]() -> asio::awaitable<config::LoadResult> { co_return config::load_file(path, kinds()); };
  config::LoadResult res = co_await asio::co_spawn(loader_, load, asio::use_awaitable);
  co_return apply_reload(res, via);
}

asio::awaitable<void> Watchdog::reload_logged(std::string via) { (void)co_await reload(via); }

asio::awaitable<HttpRes> Watchdog::reload_response(std::string via) {
  const auto [status, body] = co_await reload(via);
  co_return HttpRes{status, "application/json", json_text(body, 2)};
}

void Watchdog::reload_detached(std::string via) { net::spawn(ioc_.get_executor(), reload_logged(std::move(via)), "reload", reloads_); }

std::pair<int, nlohmann::json> Watchdog::apply_reload(const config::LoadResult& res, const std::string& via) {
  auto fail = [&](int status, const std::string& why, nlohmann::json errors = nlohmann::json()) { return refuse_reload(status, via, why, errors); };
  if (!res.config) {
    nlohmann::json errors = nlohmann::json::array();
    for (const auto& p : res.problems) errors.push_back(p.to_string());
    return fail(400, "the config " + cfg_->source + " has problems: nothing was changed", errors);
  }
  if (res.config->restart_only != cfg_->restart_only)
    return fail(400, "listen, state_dir, ledger, ha and api take effect only at a restart; they differ in " + cfg_->source +
                         ": nothing was changed (restore them, or restart lastgood)");
  const ReloadPlan plan = pipeline_.plan_reload(*res.config);
  if (!plan.refused.empty()) return fail(409, plan.refused);
  applied_.push_back(cfg_);
  cfg_ = res.config;
  const size_t before = probes_of_.size();
  pipeline_.reload(*cfg_, plan);
  // Probes of changed and removed services stop; those of changed and added ones start.
  std::set<std::string> replace(plan.changed.begin(), plan.changed.end());
  replace.insert(plan.removed.begin(), plan.removed.end());
  replace.insert(plan.reread.begin(), plan.reread.end());
  replace.insert(plan.added.begin(), plan.added.end());  // a service removed before and named again comes back to its slot
  for (size_t si = 0; si < probes_of_.size(); ++si) {
    if (!replace.count(pipeline_.service_name(si))) continue;
    for (size_t i : probes_of_[si]) {
      scheduler_.retire(i);
      probes_[i].retired = true;
    }
    probes_of_[si].clear();
    if (!pipeline_.retired(si)) add_probes(si);
  }
  for (size_t si = before; si < pipeline_.services(); ++si) add_probes(si);
  approvers_ = Approvers(*cfg_);
  if (ha_) ha_->set_config(*cfg_);
  if (!cfg_->external_url.empty()) pipeline_.notifier().set_base_url(cfg_->external_url);
  metrics_.config_reload(true, std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  nlohmann::json changes = plan.to_json();
  pipeline_.record(Event::config_reloaded, "", {{"ok", true}, {"via", via}, {"changes", changes}});
  spdlog::warn("reload ({}): config {} applied: {} added, {} removed, {} changed, {} with secrets read again, {} unchanged", via, cfg_->source,
               plan.added.size(), plan.removed.size(), plan.changed.size(), plan.reread.size(), plan.unchanged);
  for (const auto& w : security_warnings(*cfg_)) spdlog::warn("{}", w);
  return {200, nlohmann::json{{"reloaded", cfg_->source}, {"changes", changes}}};
}

Watchdog::~Watchdog() {
  net::g_probe_budget.store(nullptr);
  stop();
  if (ha_) ha_->stop();
}

void Watchdog::start() {
  const std::string made = make_private_dir(cfg_->state_dir);  // 0700 when lastgood creates it
  if (!made.empty() || ::access(cfg_->state_dir.c_str(), W_OK) != 0)
    throw std::runtime_error("state_dir " + cfg_->state_dir + " is not writable" + (made.empty() ? "" : ": " + made));
  state_dir_ok_ = true;
  lock_ = std::make_unique<StateLock>(cfg_->state_dir);  // one process per state_dir (throws naming the holder)
  net::set_internal_error_sink([this](const char* where) { metrics_.internal_error(where); });
  std::optional<std::string> key;
  if (cfg_->ledger.hmac_key) {
    auto secret = *cfg_->ledger.hmac_key;
    if (!secret.resolved())
      if (auto err = secret.resolve()) throw std::runtime_error("ledger.hmac_key: " + *err);
    if (secret.value().size() < config::LedgerOptions::kMinKeyBytes)
      throw std::runtime_error("ledger.hmac_key: " + secret.describe() + " holds fewer than " +
                               std::to_string(config::LedgerOptions::kMinKeyBytes) + " bytes");
    key = secret.value();
  }
  // Replayed as it is read (memory follows state, not history); throws on a damaged ledger.
  ledger_ = std::make_unique<Ledger>(cfg_->state_dir, std::move(key), LedgerIo{}, [this](LedgerEntry&& e) { pipeline_.replay_entry(std::move(e)); });
  if (opts_.on_ledger) ledger_->set_after_append(opts_.on_ledger);
  ledger_->set_segment_entries(cfg_->ledger.segment_entries);
  pipeline_.start(*ledger_);
  ServerLimits limits;
  limits.max_connections = static_cast<std::size_t>(cfg_->api.max_connections);
  limits.idle_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(cfg_->api.idle_timeout);
  server_ = std::make_unique<Server>(ioc_, cfg_->listen, [this](const HttpReq& r) { return handle(r); }, limits);
  server_->start();
  // Links in notices: external_url, else the listen address (a wildcard one says nothing to the
  // reader: this host's name instead, with a hint).
  if (!cfg_->external_url.empty()) {
    pipeline_.notifier().set_base_url(cfg_->external_url);
  } else {
    const auto ep = server_->local_endpoint();
    std::string host = ep.address().to_string();
    if (ep.address().is_unspecified()) {
      char name[256] = {};
      host = ::gethostname(name, sizeof name - 1) == 0 && name[0] ? name : "localhost";
      spdlog::warn("listen is {}: links in notices name this host ({}); set external_url to the address people reach lastgood at", cfg_->listen, host);
    } else if (ep.address().is_v6()) {
      host = "[" + host + "]";
    }
    pipeline_.notifier().set_base_url("http://" + host + ":" + std::to_string(ep.port()));
  }
  if (ha_) {
    // Until the replica owns a shard, the coordinator refuses: nothing is decided before joining.
    ha_->start("http://" + server_->local_endpoint().address().to_string() + ":" + std::to_string(server_->local_endpoint().port()));
  }
  // Probes' sockets stay within what the open-files limit leaves after the API's connections and
  // a margin (net/conn_budget.hpp): past it the connection idle longest is closed, never EMFILE.
  {
    rlimit rl{};
    const std::uint64_t limit = ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? rl.rlim_cur : 0;
    auto& budget = net::ConnectionBudget::of(ioc_.get_executor());
    budget.set_capacity(net::ConnectionBudget::share_of(limit, server_->max_connections()));
    net::g_probe_budget.store(&budget);
    if (limit && budget.capacity() < probes_.size())
      spdlog::warn("{} probes, and the open-files limit ({}) leaves them {} connections: the rest reconnect on each run (raise LimitNOFILE / ulimit -n to keep them all)",
                   probes_.size(), limit, budget.capacity());
  }
  scheduler_.start();
  schedule_tick();
  // Parsing a large config leaves freed memory in malloc's arenas: give it back to the system.
  ::malloc_trim(0);
  spdlog::info("lastgood listening on http://{}:{} (metrics, health, API); watching {} probe(s) in {} service(s){}",
               server_->local_endpoint().address().to_string(), server_->local_endpoint().port(), probes_.size(),
               cfg_->services.size(), opts_.dry_run ? "; dry run: no action will change anything" : "");
  for (const auto& w : security_warnings(*cfg_)) spdlog::warn("{}", w);
}

void Watchdog::schedule_tick() {
  // Windows slide and `for` / `recover_after` run out even when no result arrives. Every service
  // is ticked once a second, a tenth of them every 100 ms: with 10 000 services one tick of all
  // of them held the loop for tens of milliseconds, and every probe due then started late.
  // Ticks fall on 100 ms boundaries of the steady clock, which are also boundaries of every probe
  // slot (Cadence::grid_for), so a tick shares its wake-up with the probes due then.
  constexpr size_t kSlices = 10;
  constexpr auto kStep = std::chrono::milliseconds(1000 / kSlices);
  const auto since = std::chrono::steady_clock::now().time_since_epoch();
  tick_timer_.expires_at(std::chrono::steady_clock::time_point(since / kStep * kStep + kStep));
  tick_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || !scheduler_.running()) return;
    const size_t n = pipeline_.services(), per = (n + kSlices - 1) / kSlices;
    // A throw in one tick is counted and logged; the ticks go on (windows must keep sliding).
    net::guarded("tick", [&] { pipeline_.tick(std::chrono::system_clock::now(), tick_slice_ * per, (tick_slice_ + 1) * per); });
    if (ha_ && tick_slice_ == 0) ha_->refresh_metrics();
    tick_slice_ = (tick_slice_ + 1) % kSlices;
    schedule_tick();
  });
}

void Watchdog::stop() {
  net::set_internal_error_sink({});
  reloads_.end();
  if (ha_) ha_->resign();
  pipeline_.stop();
  scheduler_.stop();
  tick_timer_.cancel();
  if (server_) server_->stop();
}

std::size_t Watchdog::busy() const { return pipeline_.rollbacks_running() + (ha_ && ha_->resigning() ? 1 : 0); }

unsigned short Watchdog::port() const { return server_ ? server_->local_endpoint().port() : 0; }

void Watchdog::on_result(size_t index, probes::ProbeResult&& r, double lateness_s) {
  auto& st = probes_[index];
  if (st.retired) return;
  metrics_.record(st.handles, r, lateness_s);
  const bool changed = !st.last || st.last->outcome != r.outcome;
  if (changed) {
    const char* before = st.last ? probes::to_string(st.last->outcome) : "unknown";
    const logf::Fields f{.service = st.service, .probe = st.spec->name, .release = r.observed_release.value_or("")};
    if (r.outcome == probes::Outcome::ok)
      logf::info(f, "probe {}/{}: {} -> ok ({:.0f}ms)", st.service, st.spec->name, before, r.timing.total.count());
    else
      logf::warn(f, "probe {}/{}: {} -> {}: {}", st.service, st.spec->name, before, probes::to_string(r.outcome), r.reason);
  } else if (r.outcome != probes::Outcome::ok && spdlog::should_log(spdlog::level::debug)) {
    logf::debug({.service = st.service, .probe = st.spec->name}, "probe {}/{}: {}: {}", st.service, st.spec->name, probes::to_string(r.outcome), r.reason);
  }
  st.last = std::move(r);  // kept for the API; moved, not copied (this runs for every probe run)
  st.last->service = st.service;
  ++st.runs;
  pipeline_.on_result(st.service_index, st.probe_index, *st.last);
  if (opts_.on_result) opts_.on_result(*st.last);
}

bool Watchdog::ready() const {
  return (!ha_ || ha_->ready()) && state_dir_ok_ && scheduler_.running() && pipeline_.ledger_writable() && ::access(cfg_->state_dir.c_str(), W_OK) == 0;
}

std::uint64_t raise_open_files_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit want = rl;
    want.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &want) == 0) rl = want;
  }
  return rl.rlim_cur;
}

}  // namespace lastgood::watchdog
