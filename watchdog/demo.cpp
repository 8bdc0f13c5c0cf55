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

#include "watchdog/watchdog.hpp"

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
           {"rollback", {{"mode", "auto"}, {"good_after", "2s"}, {"verify", {{"within", "10s"}, {"healthy_samples", 3}}}}}}}}};
    return config::load_text(j.dump(), "<demo>", {});
  };

  std::printf("lastgood demo\n  site:     http://127.0.0.1:%u/ serving %s/current -> releases/%s\n", site_port, root.c_str(),
              live_release(root).c_str());

  int consecutive_fail = 0;
  bool restored = false;
  WatchdogOptions wopts;
  wopts.on_result = [&](const probes::ProbeResult& r) {
    std::printf("  probe %-10s release=%-3s %-5s %6.1fms %s\n", (r.service + "/" + r.probe).c_str(), live_release(root).c_str(),
                probes::to_string(r.outcome), r.timing.total.count(), r.reason.c_str());
    consecutive_fail = r.outcome == probes::Outcome::fail ? consecutive_fail + 1 : 0;
    if (consecutive_fail == 3 && !restored) {
      restored = true;
      std::printf("  >> trigger demo/down: 3 consecutive failures on release %s (evidence: %s)\n", live_release(root).c_str(),
                  r.reason.c_str());
      std::printf("  >> automatic rollback is not in this build yet; restoring v1 by hand to show recovery\n");
      switch_release(root, "v1");
    }
    std::fflush(stdout);
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
  std::printf("  in 4s release v2 (answers 500) goes live\n");
  std::fflush(stdout);

  asio::steady_timer deploy(ioc);
  deploy.expires_after(std::chrono::seconds(4));
  deploy.async_wait([&](boost::system::error_code e) {
    if (e) return;
    std::printf("  >> deploy: current -> releases/v2\n");
    std::fflush(stdout);
    switch_release(root, "v2");
  });

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
  fs::remove_all(root, ec);
  std::printf("demo finished\n");
  return 0;
}

}  // namespace lastgood::watchdog
