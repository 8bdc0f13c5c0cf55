// The built-in demo: an in-process site served from releases/ + a `current` symlink on loopback,
// watched by lastgood. A bad release goes live after a few seconds and the watchdog sees it.
#include "watchdog/demo.hpp"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "watchdog/state/ledger.hpp"
#include "watchdog/watchdog.hpp"
#include "watchdog/kinds.hpp"

namespace lastgood::watchdog {

namespace fs = std::filesystem;
namespace asio = boost::asio;

namespace {

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Atomic switch of `current`: a symlink under a temp name, renamed over the old one.
void switch_release(const fs::path& root, const std::string& release) {
  fs::path tmp = root / ("current.tmp." + std::to_string(::getpid()));
  fs::remove(tmp);
  fs::create_symlink(fs::path("releases") / release, tmp);
  fs::rename(tmp, root / "current");
}

std::string live_release(const fs::path& root) {
  std::error_code ec;
  return fs::read_symlink(root / "current", ec).filename().string();
}

}  // namespace

int run_demo(const DemoOptions& opts) {
  std::error_code ec;
  fs::path root = fs::temp_directory_path() / ("lastgood-demo-" + std::to_string(::getpid()));
  fs::create_directories(root / "releases" / "v1");
  fs::create_directories(root / "releases" / "v2");
  fs::create_directories(root / "state");
  write_file(root / "releases/v1/index.html", "<!doctype html><title>demo v1</title><p>release v1: all good</p>\n");
  write_file(root / "releases/v2/index.html", "<!doctype html><p>release v2: broken build</p>\n");
  write_file(root / "releases/v2/STATUS", "500\n");
  switch_release(root, "v1");

  asio::io_context ioc;
  // The demo site: serves current/index.html with the status in current/STATUS (default 200).
  Server site(ioc, "127.0.0.1:0", [root](const HttpReq&) {
    HttpRes res{200, "text/html; charset=utf-8", read_file(root / "current/index.html")};
    std::string st = read_file(root / "current/STATUS");
    if (!st.empty()) res.status = std::stoi(st);
    return res;
  });
  site.start();
  const auto site_port = site.local_endpoint().port();

  auto make_config = [&](const std::string& listen) {
    nlohmann::json j{
        {"listen", listen},
        {"state_dir", (root / "state").string()},
        {"authority", {{"P0", {{"roles", {"oncall"}}, {"quorum", 1}, {"auto", true}}}}},
        {"services",
         {{{"name", "demo"},
           {"probes",
            {{{"name", "home"},
              {"kind", "http"},
              {"url", "http://127.0.0.1:" + std::to_string(site_port) + "/"},
              {"interval", "500ms"},
              {"timeout", "400ms"},
              {"expect", {{"status", "200-299"}, {"body_contains", "<title>"}, {"max_latency", "300ms"}}}}}},
           {"deployment", {{"kind", "local_symlink"}, {"path", root.string()}}},
           {"triggers", {{{"name", "down"}, {"severity", "P0"}, {"rule", {{"kind", "consecutive_failures"}, {"count", 3}}}}}},
           {"rollback",
            {{"mode", "auto"}, {"good_after", "2s"}, {"cooldown", "1m"}, {"verify", {{"within", "10s"}, {"healthy_samples", 3}}}}}}}}};
    return config::load_text(j.dump(), "<demo>", lastgood::kinds(), {});
  };

  std::printf("lastgood demo\n  site:     http://127.0.0.1:%u/ serving %s/current -> releases/%s\n", site_port, root.c_str(),
              live_release(root).c_str());

  const auto t_start = std::chrono::steady_clock::now();
  auto stamp = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count(); };
  auto say = [&](const std::string& text) {
    std::printf("  [%5.1fs] %s\n", stamp(), text.c_str());
    std::fflush(stdout);
  };
  std::optional<probes::Outcome> last_outcome;
  bool deployed = false;
  WatchdogOptions wopts;
  wopts.on_result = [&](const probes::ProbeResult& r) {
    if (last_outcome == r.outcome) return;  // say only what changed
    last_outcome = r.outcome;
    say("probe demo/home on " + live_release(root) + ": " + probes::to_string(r.outcome) + (r.reason.empty() ? "" : " (" + r.reason + ")"));
  };
  asio::steady_timer deploy(ioc);
  wopts.on_ledger = [&](const LedgerEntry& e) {
    const auto& d = e.data;
    if (e.type == "release_observed") {
      say("live release is " + d.value("release", "?"));
    } else if (e.type == "release_verified_good") {
      say("release " + d.value("release", "?") + " verified good (live and healthy for good_after 2s)");
      if (!deployed) {
        deployed = true;
        deploy.expires_after(std::chrono::seconds(1));
        deploy.async_wait([&](boost::system::error_code ec) {
          if (ec) return;
          say("DEPLOY: current -> releases/v2 (a broken build: answers 500)");
          switch_release(root, "v2");
        });
      }
    } else if (e.type == "transition" && d.value("to", "") == "firing") {
      say("BREACH: trigger " + d.value("trigger", "") + " (" + d.value("severity", "") + ") is firing: " + d["evidence"].value("measure", "") +
          " = " + std::to_string(d["evidence"].value("value", 0.0)).substr(0, 4) + ", threshold " +
          std::to_string(d["evidence"].value("threshold", 0.0)).substr(0, 4));
    } else if (e.type == "decision") {
      say("DECISION: " + d.value("kind", "") + ": " + d.value("reason", ""));
    } else if (e.type == "action_started") {
      say("ROLLBACK started (recorded in the ledger first): " + d.value("from", "") + " -> " + d.value("to", ""));
    } else if (e.type == "action_finished") {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.2f ms", d.value("seconds", 0.0) * 1000);
      say(std::string("ROLLBACK ") + (d.value("ok", false) ? "done in " + std::string(buf) + ": " + d.value("output", "") : "FAILED: " + d.value("error", "")));
    } else if (e.type == "verification") {
      say("VERIFIED: " + d.value("outcome", "") + " on " + d.value("release", "") + " (" + std::to_string(d.value("healthy_samples", 0)) +
          " healthy results in a row)");
      say("the whole story is in " + (root / "state" / "ledger.jsonl").string() + " (hash-chained); lastgood keeps watching");
    } else if (e.type == "escalated") {
      say("ESCALATED: " + d.value("reason", ""));
    }
  };

  auto loaded = make_config(opts.listen);
  if (!loaded.config) {
    for (auto& p : loaded.problems) std::fprintf(stderr, "%s\n", p.to_string().c_str());
    return 2;
  }
  std::unique_ptr<Watchdog> wd;
  try {
    wd = std::make_unique<Watchdog>(ioc, loaded.config, wopts);
    wd->start();
  } catch (const std::system_error&) {
    spdlog::warn("demo: {} is taken; using a free port instead", opts.listen);
    loaded = make_config("127.0.0.1:0");
    wd = std::make_unique<Watchdog>(ioc, loaded.config, wopts);
    wd->start();
  }
  std::printf("  lastgood: http://127.0.0.1:%u/metrics  /healthz  /readyz  /api/v1/services\n", wd->port());
  std::printf("  v1 goes live; once it is verified good, v2 (broken) is deployed; lastgood should roll back on its own\n");
  std::fflush(stdout);

  asio::steady_timer until(ioc);
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  auto shutdown = [&] {
    wd->stop();
    site.stop();
    deploy.cancel();
    until.cancel();
    signals.cancel();
    ioc.stop();
  };
  signals.async_wait([&](boost::system::error_code e, int) {
    if (!e) shutdown();
  });
  if (opts.run_for) {
    until.expires_after(*opts.run_for);
    until.async_wait([&](boost::system::error_code e) {
      if (!e) shutdown();
    });
  } else {
    std::printf("  Ctrl-C to stop\n");
  }
  ioc.run();
  wd.reset();
  if (opts.keep) {
    std::printf("demo finished; kept %s (the ledger: lastgood ledger verify %s)\n", root.string().c_str(),
                (root / "state" / "ledger.jsonl").string().c_str());
    return 0;
  }
  fs::remove_all(root, ec);
  std::printf("demo finished (its folder removed; --keep keeps it)\n");
  return 0;
}

}  // namespace lastgood::watchdog
