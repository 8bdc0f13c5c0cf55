// The cost of issue 14's checks: the supervised spawn against a bare co_spawn (per detached
// coroutine: decisions, rollbacks, notices; probes do not go through it), and a local_symlink
// switch with its compare-before-switch (flock + readlink) against the switch alone (rename).
// Run: make bench-policy
#include <benchmark/benchmark.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "actions/action.hpp"
#include "config/config.hpp"
#include "net/supervise.hpp"
#include "watchdog/kinds.hpp"

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace lastgood;

namespace {

asio::awaitable<void> nothing() { co_return; }

void BM_co_spawn_bare(benchmark::State& state) {
  asio::io_context ioc;
  for (auto _ : state) {
    // The baseline: a bare co_spawn whose handler rethrows (nothing is swallowed), no supervision.
    asio::co_spawn(ioc, nothing(), [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    });
    ioc.run();
    ioc.restart();
  }
}
BENCHMARK(BM_co_spawn_bare);

void BM_net_spawn(benchmark::State& state) {
  asio::io_context ioc;
  net::Lifetime life;
  for (auto _ : state) {
    net::spawn(ioc.get_executor(), [] { return nothing(); }, "bench", life);
    ioc.run();
    ioc.restart();
  }
}
BENCHMARK(BM_net_spawn);

// The form a probe run takes: a coroutine already made, no std::function.
void BM_net_spawn_awaitable(benchmark::State& state) {
  asio::io_context ioc;
  net::Lifetime life;
  for (auto _ : state) {
    net::spawn(ioc.get_executor(), nothing(), "bench", life);
    ioc.run();
    ioc.restart();
  }
}
BENCHMARK(BM_net_spawn_awaitable);

struct Site {
  fs::path root = fs::temp_directory_path() / ("lastgood-safety-bench-" + std::to_string(::getpid()));
  Site() {
    fs::remove_all(root);
    fs::create_directories(root / "releases" / "a");
    fs::create_directories(root / "releases" / "b");
    fs::create_symlink("releases/a", root / "current");
  }
  ~Site() { fs::remove_all(root); }
};

// The switch alone, as before the check: symlink + rename + fsync of the folder.
void BM_switch_without_check(benchmark::State& state) {
  Site site;
  const int dfd = ::open(site.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  bool to_b = true;
  for (auto _ : state) {
    const auto tmp = site.root / "current.tmp";
    fs::remove(tmp);
    fs::create_symlink(to_b ? "releases/b" : "releases/a", tmp);
    std::rename(tmp.c_str(), (site.root / "current").c_str());
    ::fsync(dfd);
    to_b = !to_b;
  }
  ::close(dfd);
}
BENCHMARK(BM_switch_without_check)->Unit(benchmark::kMicrosecond);

// local_symlink's execute(): flock, readlink and compare with `from`, then the same switch.
void BM_switch_with_check(benchmark::State& state) {
  Site site;
  nlohmann::json cfg{{"services", {{{"name", "app"},
                                    {"probes", {{{"name", "p"}, {"kind", "tcp"}, {"address", "127.0.0.1:1"}}}},
                                    {"deployment", {{"kind", "local_symlink"}, {"path", site.root.string()}}}}}}};
  auto loaded = config::load_text(cfg.dump(), "bench", lastgood::kinds(), {});
  if (!loaded.config) {
    state.SkipWithError("config");
    return;
  }
  asio::io_context ioc;
  auto action = actions::make_action(ioc.get_executor(), "app", *loaded.config->services[0].deployment);
  const auto ab = action->plan("a", "b", {});
  const auto ba = action->plan("b", "a", {});
  bool to_b = true;
  for (auto _ : state) {
    bool ok = false;
    asio::co_spawn(ioc, action->execute(to_b ? ab : ba), [&](std::exception_ptr, actions::Outcome o) { ok = o.ok; });
    ioc.run();
    ioc.restart();
    if (!ok) {
      state.SkipWithError("switch failed");
      break;
    }
    to_b = !to_b;
  }
}
BENCHMARK(BM_switch_with_check)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
