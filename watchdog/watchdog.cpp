#include "watchdog/watchdog.hpp"

#include "watchdog/json_text.hpp"
#include "watchdog/validate.hpp"

#include <arpa/inet.h>

#include <malloc.h>

#include "watchdog/page.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <spdlog/spdlog.h>

#include "net/supervise.hpp"

namespace lastgood::watchdog {

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
  for (size_t si = 0; si < cfg_->services.size(); ++si) {
    const auto& svc = cfg_->services[si];
    for (size_t pi = 0; pi < svc.probes.size(); ++pi) {
      const auto& p = svc.probes[pi];
      probes_.push_back(ProbeState{si, pi, svc.name, &p, metrics_.probe_handles(svc.name, p.name), std::nullopt, 0});
      scheduler_.add(probes::make_probe(ioc_.get_executor(), svc.name, p));
    }
  }
}

Watchdog::~Watchdog() { stop(); }

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
  ledger_ = std::make_unique<Ledger>(cfg_->state_dir, std::move(key));  // throws on a damaged ledger
  if (opts_.on_ledger) ledger_->set_after_append(opts_.on_ledger);
  pipeline_.start(*ledger_);
  ServerLimits limits;
  limits.max_connections = static_cast<std::size_t>(cfg_->api.max_connections);
  limits.idle_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(cfg_->api.idle_timeout);
  server_ = std::make_unique<Server>(ioc_, cfg_->listen, [this](const HttpReq& r) { return handle(r); }, limits);
  server_->start();
  pipeline_.notifier().set_base_url("http://" + server_->local_endpoint().address().to_string() + ":" +
                                    std::to_string(server_->local_endpoint().port()));
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
    tick_slice_ = (tick_slice_ + 1) % kSlices;
    schedule_tick();
  });
}

void Watchdog::stop() {
  net::set_internal_error_sink({});
  pipeline_.stop();
  scheduler_.stop();
  tick_timer_.cancel();
  if (server_) server_->stop();
}

unsigned short Watchdog::port() const { return server_ ? server_->local_endpoint().port() : 0; }

void Watchdog::on_result(size_t index, probes::ProbeResult&& r, double lateness_s) {
  auto& st = probes_[index];
  metrics_.record(st.handles, r, lateness_s);
  const bool changed = !st.last || st.last->outcome != r.outcome;
  if (changed) {
    const char* before = st.last ? probes::to_string(st.last->outcome) : "unknown";
    if (r.outcome == probes::Outcome::ok)
      spdlog::info("probe {}/{}: {} -> ok ({:.0f}ms)", st.service, st.spec->name, before, r.timing.total.count());
    else
      spdlog::warn("probe {}/{}: {} -> {}: {}", st.service, st.spec->name, before, probes::to_string(r.outcome), r.reason);
  } else if (r.outcome != probes::Outcome::ok) {
    spdlog::debug("probe {}/{}: {}: {}", st.service, st.spec->name, probes::to_string(r.outcome), r.reason);
  }
  st.last = std::move(r);  // kept for the API; moved, not copied (this runs for every probe run)
  st.last->service = st.service;
  ++st.runs;
  pipeline_.on_result(st.service_index, st.probe_index, *st.last);
  if (opts_.on_result) opts_.on_result(*st.last);
}

bool Watchdog::ready() const {
  return state_dir_ok_ && scheduler_.running() && pipeline_.ledger_writable() && ::access(cfg_->state_dir.c_str(), W_OK) == 0;
}

nlohmann::json Watchdog::services_json() const {
  nlohmann::json out = nlohmann::json::array();
  size_t pi = 0;
  const auto now = std::chrono::system_clock::now();
  for (size_t si = 0; si < cfg_->services.size(); ++si) {
    const auto& svc = cfg_->services[si];
    nlohmann::json s = pipeline_.service_json(si, now);
    s["name"] = svc.name;
    s["deployment"] = svc.deployment ? nlohmann::json(svc.deployment->kind) : nlohmann::json();
    nlohmann::json ps = nlohmann::json::array();
    for (size_t k = 0; k < svc.probes.size(); ++k, ++pi) {
      const auto& st = probes_[pi];
      nlohmann::json p{{"name", st.spec->name}, {"kind", st.spec->kind}, {"runs", st.runs}};
      p["last"] = st.last ? st.last->to_json() : nlohmann::json();
      ps.push_back(p);
    }
    s["probes"] = ps;
    s["rollback_mode"] = svc.rollback.mode;
    out.push_back(s);
  }
  return out;
}

// Names the API answers to: IP literals (no DNS, so no rebinding), localhost, and api.allowed_hosts.
// A page on any other name that reaches lastgood through DNS rebinding gets nothing.
bool Watchdog::host_allowed(const std::string& host) const {
  if (host.empty()) return true;  // HTTP/1.0
  if (host.front() == '[') return true;  // an IPv6 literal
  std::string name = host.substr(0, host.find(':'));
  for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!name.empty() && name.back() == '.') name.pop_back();
  unsigned char addr[4];
  if (::inet_pton(AF_INET, name.c_str(), addr) == 1) return true;
  if (name == "localhost" || name.ends_with(".localhost")) return true;
  const auto& allowed = cfg_->api.allowed_hosts;
  return std::find(allowed.begin(), allowed.end(), name) != allowed.end();
}

HttpRes Watchdog::handle(const HttpReq& req) {
  std::string path = req.target.substr(0, req.target.find('?'));
  // The page and the API answer only to lastgood's own names (DNS rebinding); /metrics and the
  // health endpoints, which hold no secret and are scraped under whatever name, to any.
  const bool open_path = path == "/metrics" || path == "/healthz" || path == "/readyz";
  if (!open_path && !host_allowed(req.host))
    return HttpRes::json_error(403, "Host \"" + req.host.substr(0, 100) + "\" is not a name of this lastgood (add it to api.allowed_hosts)");
  const std::string client = client_address(req.remote, req.forwarded_for, cfg_->api.trusted_proxies);
  const auto now = std::chrono::steady_clock::now();
  const bool get = req.method == "GET" || req.method == "HEAD";
  if (path == "/metrics") {
    if (!get) return HttpRes::json_error(405, "use GET");
    // Written on the server's worker thread, a piece at a time: with thousands of probes the
    // text takes long enough to make every probe late if made on the loop, and at 10 000 probes
    // it is 16 MB, which held whole was a quarter of lastgood's memory.
    HttpRes res{200, "text/plain; version=0.0.4; charset=utf-8", ""};
    res.stream = [this, w = std::shared_ptr<Metrics::TextWriter>()](std::string& out) mutable {
      if (!w) w = std::make_shared<Metrics::TextWriter>(metrics_);  // the cells as of the first piece
      return w->next(out, 256 * 1024);
    };
    return res;
  }
  if (path == "/" || path == "/index.html") {
    if (!get) return HttpRes::json_error(405, "use GET");
    return {200, "text/html; charset=utf-8", page_html()};
  }
  if (path == "/page.css" || path == "/page.js") {
    if (!get) return HttpRes::json_error(405, "use GET");
    return path == "/page.css" ? HttpRes{200, "text/css; charset=utf-8", page_css()} : HttpRes{200, "text/javascript; charset=utf-8", page_js()};
  }
  if (path == "/healthz") return {200, "text/plain; charset=utf-8", "ok\n"};
  if (path == "/readyz") {
    if (ready()) return {200, "text/plain; charset=utf-8", "ready\n"};
    return {503, "text/plain; charset=utf-8",
            std::string("not ready:") + (state_dir_ok_ && ::access(cfg_->state_dir.c_str(), W_OK) == 0 ? "" : " state dir not writable;") +
                (scheduler_.running() ? "" : " scheduler stopped;") +
                (pipeline_.ledger_writable() ? "" : " ledger not writable (" + pipeline_.ledger_error() + "): no action until it is;") + "\n"};
  }
  if (path == "/api/v1/services") {
    if (!get) return HttpRes::json_error(405, "use GET");
    nlohmann::json decisions = nlohmann::json::array();
    for (const auto& d : pipeline_.recent_decisions()) decisions.push_back(to_json(d));
    return {200, "application/json", json_text(nlohmann::json{{"services", services_json()}, {"recent_decisions", decisions}}, 2)};
  }
  if (path == "/api/v1/alerts/alertmanager") {
    if (req.method != "POST") return HttpRes::json_error(405, "use POST");
    if (!cfg_->alertmanager) return HttpRes::json_error(404, "no alertmanager block in the config");
    if (!alertmanager_token_ok(req.authorization)) {  // a valid token is never refused for others' failures
      if (alert_failures_.blocked(client, req.authorization, now))
        return HttpRes::json_error(429, "too many failed authentications from " + client + " with this token; try again in a minute");
      alert_failures_.failed(client, req.authorization, now);
      return HttpRes::json_error(401, "the Alertmanager bearer token is missing or wrong");
    }
    auto payload = nlohmann::json::parse(req.body, nullptr, false);
    if (payload.is_discarded()) return HttpRes::json_error(400, "the body is not JSON");
    std::string problem;
    auto counts = pipeline_.on_alertmanager(payload, &problem);
    if (!problem.empty()) return HttpRes::json_error(400, "not an Alertmanager webhook payload: " + problem);
    return {200, "application/json", json_text(counts)};
  }
  const std::string prop_prefix = "/api/v1/proposals/";
  if (path.rfind(prop_prefix, 0) == 0) {
    const std::string rest = path.substr(prop_prefix.size());
    const auto slash = rest.find('/');
    const std::string id = rest.substr(0, slash), verb = slash == std::string::npos ? "" : rest.substr(slash + 1);
    if (verb != "approve" && verb != "reject") return HttpRes::json_error(404, "use /api/v1/proposals/{id}/approve or /reject");
    if (req.method != "POST") return HttpRes::json_error(405, "use POST");
    const auto* who = approvers_.identify(req.authorization);
    if (!who) {  // a valid token is never refused for others' failures
      if (approver_failures_.blocked(client, req.authorization, now))
        return HttpRes::json_error(429, "too many failed authentications from " + client + " with this token; try again in a minute");
      approver_failures_.failed(client, req.authorization, now);
    }
    std::string comment;
    if (!req.body.empty()) {
      auto b = nlohmann::json::parse(req.body, nullptr, false);
      if (b.is_discarded() || !b.is_object()) return HttpRes::json_error(400, "the body must be a JSON object like {\"comment\": \"...\"}");
      if (b.contains("comment") && b["comment"].is_string()) comment = b["comment"].get<std::string>();
    }
    auto res = pipeline_.vote(id, who, verb == "approve", comment, client);
    return {res.status, "application/json", json_text(res.body, 2)};
  }
  if (path == "/api/v1/proposals") {
    if (!get) return HttpRes::json_error(405, "use GET");
    return {200, "application/json", json_text(nlohmann::json{{"proposals", pipeline_.proposals_json()}}, 2)};
  }
  if (path == "/api/v1/incidents") {
    if (!get) return HttpRes::json_error(405, "use GET");
    return {200, "application/json", json_text(nlohmann::json{{"incidents", pipeline_.incidents().list()}}, 2)};
  }
  const std::string inc_prefix = "/api/v1/incidents/";
  if (path.rfind(inc_prefix, 0) == 0) {
    if (!get) return HttpRes::json_error(405, "use GET");
    std::string id = path.substr(inc_prefix.size());
    const bool markdown = id.size() > 3 && id.substr(id.size() - 3) == ".md";
    if (markdown) id.resize(id.size() - 3);
    const auto* inc = pipeline_.incidents().find(id);
    if (!inc) return HttpRes::json_error(404, "no incident " + id + " (GET /api/v1/incidents lists them)");
    if (markdown) return {200, "text/markdown; charset=utf-8", Incidents::to_markdown(*inc)};
    return {200, "application/json", json_text(Incidents::to_json(*inc), 2)};
  }
  const std::string svc_prefix = "/api/v1/services/";
  if (path.rfind(svc_prefix, 0) == 0 && path.size() > svc_prefix.size() + 6 && path.substr(path.size() - 6) == "/clear") {
    if (req.method != "POST") return HttpRes::json_error(405, "use POST");
    const std::string name = path.substr(svc_prefix.size(), path.size() - svc_prefix.size() - 6);
    auto si = pipeline_.service_index(name);
    if (!si) return HttpRes::json_error(404, "no service named " + name);
    // Every state-changing endpoint needs a token: without approvers nobody may clear.
    if (!approvers_.any())
      return HttpRes::json_error(403, "no approvers are configured, so nobody may clear an escalation over the API: add approvers (with tokens) to the config");
    const auto* a = approvers_.identify(req.authorization);
    if (!a) {
      if (approver_failures_.blocked(client, req.authorization, now))
        return HttpRes::json_error(429, "too many failed authentications from " + client + " with this token; try again in a minute");
      approver_failures_.failed(client, req.authorization, now);
      pipeline_.record_unauthenticated("clear_refused", name, client, {{"why", "no or unknown token"}});
      return HttpRes::json_error(401, "an approver's bearer token is required");
    }
    const std::string who = a->name;
    if (!pipeline_.clear(*si, who, client)) return HttpRes::json_error(409, "service " + name + " is not escalated");
    return {200, "application/json", json_text(nlohmann::json{{"service", name}, {"cleared_by", who}})};
  }
  return HttpRes::json_error(404, "no such endpoint: " + path);
}

bool Watchdog::alertmanager_token_ok(const std::string& authorization) const {
  if (!cfg_->alertmanager || !cfg_->alertmanager->token || !cfg_->alertmanager->token->resolved()) return false;
  const std::string want = "Bearer " + cfg_->alertmanager->token->value();
  auto digest = [](const std::string& x) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(x.data(), x.size(), md, &len, EVP_sha256(), nullptr);
    return std::string(reinterpret_cast<char*>(md), len);
  };
  const std::string a = digest(authorization), b = digest(want);
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
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
