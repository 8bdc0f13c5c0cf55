#include "watchdog/scheduler.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "watchdog/cadence.hpp"

namespace lastgood::watchdog {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

struct Scheduler::Entry {
  std::unique_ptr<probes::Probe> probe;
  Cadence cadence;
  asio::steady_timer timer;
  bool stopped = false;
};

Scheduler::Scheduler(asio::io_context& ioc, Sink sink, SkipSink on_skip)
    : ioc_(ioc), sink_(std::move(sink)), on_skip_(std::move(on_skip)) {}

Scheduler::~Scheduler() { stop(); }

size_t Scheduler::add(std::unique_ptr<probes::Probe> probe) {
  auto interval = std::chrono::duration_cast<Clock::duration>(probe->spec().interval);
  entries_.push_back(std::unique_ptr<Entry>(new Entry{std::move(probe), Cadence(interval), asio::steady_timer(ioc_), false}));
  return entries_.size() - 1;
}

void Scheduler::start() {
  running_ = true;
  // Runs are planned on a grid sized from the total rate (Cadence::grid_for): probes due in the
  // same slot start in one wake-up. The planned time is the grid point, so lateness measures the
  // loop's own delay.
  double rate = 0;
  for (const auto& e : entries_) rate += 1.0 / std::chrono::duration<double>(e->cadence.interval()).count();
  for (auto& e : entries_) {
    const auto interval = e->cadence.interval();
    e->cadence = Cadence(interval, e->cadence.jitter(), Cadence::grid_for(interval, rate));
  }
  for (size_t i = 0; i < entries_.size(); ++i) {
    asio::co_spawn(ioc_, loop(*entries_[i], i), [name = entries_[i]->probe->spec().name](std::exception_ptr ep) {
      if (!ep) return;
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& ex) {
        spdlog::error("probe loop {} ended by an exception: {}", name, ex.what());
      }
    });
  }
}

void Scheduler::stop() {
  running_ = false;
  for (auto& e : entries_) {
    e->stopped = true;
    e->timer.cancel();
  }
}

asio::awaitable<void> Scheduler::loop(Entry& e, size_t index) {
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  auto planned = e.cadence.first(Clock::now(), uni(rng_));
  while (!e.stopped) {
    e.timer.expires_at(planned);
    auto [ec] = co_await e.timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (e.stopped) break;
    (void)ec;
    const double lateness = std::chrono::duration<double>(Clock::now() - planned).count();
    probes::ProbeResult r;
    try {
      r = co_await e.probe->run();
    } catch (const std::exception& ex) {  // a probe bug must not end the loop
      r.service = "";
      r.probe = e.probe->spec().name;
      r.started_at = std::chrono::system_clock::now();
      r.outcome = probes::Outcome::error;
      r.reason = std::string("internal error: ") + ex.what();
    }
    if (e.stopped) break;
    sink_(index, std::move(r), lateness);
    int skipped = 0;
    planned = e.cadence.next(planned, Clock::now(), uni(rng_), &skipped);
    if (skipped && on_skip_) on_skip_(index, skipped);
  }
}

}  // namespace lastgood::watchdog
