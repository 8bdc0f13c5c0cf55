// The lastgood binary as the integration tests run it (Lastgood), and the scenario most of them
// start from (Site, app_service).
#include "fixtures.hpp"

#include <exception>
#include <iostream>

#include "watchdog/state/ledger.hpp"

namespace testing {

namespace {
// The port in "lastgood listening on http://HOST:PORT", or 0 before that line.
unsigned short listening_port(const std::string& log) {
  static const std::string mark = "lastgood listening on http://";
  const auto at = log.find(mark);
  if (at == std::string::npos) return 0;
  const auto colon = log.find(':', log.find("//", at) + 2);  // IPv4 loopback: the first ':' after the host
  if (colon == std::string::npos) return 0;
  return static_cast<unsigned short>(std::atoi(log.c_str() + colon + 1));
}
}  // namespace

Lastgood::Lastgood(TempDir& d, nlohmann::json service, nlohmann::json extra)
    : Lastgood(d, Config{{{"authority", {{"P0", {{"roles", {"oncall"}}, {"quorum", 1}, {"auto", true}}}}}, {"services", {service}}}}) {
  nlohmann::json c = nlohmann::json::parse(read_file(config));
  c.update(extra);
  state = c["state_dir"].get<std::string>();
  write_file(config, c.dump(2));
}

Lastgood::Lastgood(TempDir& d, Config whole) : dir(d), state(d.path / "state"), config(d.path / "lastgood.json") {
  nlohmann::json c = std::move(whole.json);
  if (!c.contains("listen")) c["listen"] = "127.0.0.1:0";  // the kernel picks the port: read back by port()
  if (!c.contains("state_dir")) c["state_dir"] = state.string();
  state = c["state_dir"].get<std::string>();
  write_file(config, c.dump(2));
}

Lastgood::~Lastgood() {
  if (std::uncaught_exceptions() == 0 || runs == 0) return;
  std::cerr << "---- lastgood's log (" << runs << " run(s)) at the failure ----\n" << log() << "\n----\n";
}

fs::path Lastgood::log_file(int run) const { return dir.path / ("lastgood-" + std::to_string(run) + ".log"); }

void Lastgood::start(std::map<std::string, std::string> env) {
  std::vector<std::string> argv = prefix;
  for (const char* a : {LASTGOOD_BINARY, "run", "-c"}) argv.push_back(a);
  argv.push_back(config.string());
  for (const auto& a : args) argv.push_back(a);
  port_ = 0;
  proc = std::make_unique<Process>(argv, log_file(++runs), env);
}

unsigned short Lastgood::port() {
  if (port_ == 0 && runs > 0) wait_until([&] { return (port_ = listening_port(read_file(log_file(runs)))) != 0; }, std::chrono::seconds(20));
  return port_;
}

bool Lastgood::ready() {
  if (port_ == 0 && runs > 0) port_ = listening_port(read_file(log_file(runs)));
  return port_ != 0 && http_call(port_, "GET", "/readyz").status == 200;
}

std::vector<lastgood::watchdog::LedgerEntry> Lastgood::ledger() const {
  return lastgood::watchdog::read_ledger((state / "ledger.jsonl").string(), hmac_key.empty() ? nullptr : &hmac_key);
}

bool Lastgood::has(const std::string& type, const std::string& text) const { return ledger_has(state / "ledger.jsonl", type, text); }

std::string Lastgood::log() const {
  std::string all;
  for (int i = 1; i <= runs; ++i) all += read_file(log_file(i));
  return all;
}

bool Lastgood::wait_for(const std::string& type, std::function<bool(const nlohmann::json&)> pred, std::chrono::seconds t, size_t skip) {
  return wait_until(
      [&] {
        auto es = ledger();
        for (size_t i = skip; i < es.size(); ++i)
          if (es[i].type == type && (!pred || pred(es[i].data))) return true;
        return false;
      },
      t);
}

int Lastgood::count(const std::string& type) const {
  int n = 0;
  for (const auto& e : ledger()) n += e.type == type;
  return n;
}

std::string Lastgood::last(const std::string& type, const std::string& field) const {
  std::string v;
  for (const auto& e : ledger())
    if (e.type == type && e.data.contains(field)) v = e.data[field].is_string() ? e.data[field].get<std::string>() : e.data[field].dump();
  return v;
}

std::vector<std::string> Lastgood::incident_events(const std::string& status) const {
  // The record holding the last action (an incident opens at its breach and takes its action).
  const std::string action = last("action_started", "action_id");
  nlohmann::json inc;
  if (!wait_until(
          [&] {
            std::error_code ec;
            if (!fs::is_directory(state / "incidents", ec)) return false;
            for (const auto& f : fs::directory_iterator(state / "incidents", ec)) {
              if (f.path().extension() != ".json") continue;
              auto j = nlohmann::json::parse(read_file(f.path()), nullptr, false);
              if (!j.is_discarded() && j.value("action_id", nlohmann::json()) == action && j.value("status", "") == status) {
                inc = j;
                return true;
              }
            }
            return false;
          },
          std::chrono::seconds(5)))
    return {};
  std::vector<std::string> events;
  for (const auto& e : inc["timeline"]) events.push_back(e["event"]);
  return events;
}

bool Lastgood::ledger_verifies() const {
  std::string out;
  return run_command({LASTGOOD_BINARY, "ledger", "verify", (state / "ledger.jsonl").string()}, &out) == 0;
}

Site::Site(TempDir& dir, const std::vector<std::string>& releases) : root(dir.path / "app") {
  make_releases(root, releases);
  nginx = std::make_unique<Nginx>(dir.path / "", nullptr, root / "current");
}

nlohmann::json Site::local_symlink(nlohmann::json extra) const {
  nlohmann::json d{{"kind", "local_symlink"}, {"path", root.string()}};
  d.update(extra);
  return d;
}

nlohmann::json app_service(const std::string& url, nlohmann::json deployment, const App& o) {
  nlohmann::json probes = {{{"name", "home"}, {"kind", "http"}, {"url", url}, {"interval", "200ms"}, {"timeout", o.timeout},
                            {"expect", {{"body_contains", "<title>"}}}}};
  for (const auto& p : o.extra_probes) probes.push_back(p);
  nlohmann::json rollback{{"mode", o.mode}, {"good_after", o.good_after}, {"verify", {{"within", o.verify_within}, {"healthy_samples", 3}}}};
  if (!o.cooldown.empty()) rollback["cooldown"] = o.cooldown;
  nlohmann::json s{{"name", "app"},
                   {"probes", probes},
                   {"triggers", {{{"name", "down"}, {"severity", o.severity}, {"rule", {{"kind", "consecutive_failures"}, {"count", o.failures}}}}}},
                   {"rollback", rollback}};
  if (!deployment.is_null()) s["deployment"] = std::move(deployment);
  return s;
}

nlohmann::json strict_app(const std::string& url, nlohmann::json deployment, nlohmann::json extra_probes, std::string mode) {
  return app_service(url, std::move(deployment),
                     App{.failures = 3, .mode = std::move(mode), .timeout = "200ms", .good_after = "500ms", .verify_within = "20s", .cooldown = "10m",
                         .extra_probes = std::move(extra_probes)});
}

nlohmann::json alice_approves_p0() {
  return {{"approvers", nlohmann::json::array({{{"name", "alice"}, {"roles", {"oncall"}}, {"token_env", "LG_TEST_TOKEN"}}})},
          {"authority", {{"P0", {{"roles", {"oncall"}}, {"quorum", 1}, {"auto", false}}}}}};
}

double metric(const std::string& metrics, const std::string& series) {
  const auto at = metrics.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(metrics.substr(at + series.size() + 2));
}

}  // namespace testing
