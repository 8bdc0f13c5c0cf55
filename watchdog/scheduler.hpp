#pragma once
// Runs every probe on its own interval (±10% jitter, planned on a slot grid sized from the total
// rate: Cadence::grid_for) on one io_context. One timer serves all probes: the due runs wait in a
// min-heap by planned time, and each wake-up starts every run whose time has come. A probe's
// runs never overlap (the next run is planned when the previous one ends); each run is bounded by
// the probe's own deadline. stop() cancels the timer; results of runs still in flight are dropped.
//
// Why not one coroutine and one timer per probe: that holds about 1.5 KB per probe for the
// process's life (a suspended frame, its spawn state and a timer) and one entry per probe in
// Asio's timer queue; here a run's frames exist only while it runs (docs/benchmarks.md).
#include <chrono>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "net/supervise.hpp"
#include "probes/probe.hpp"
#include "watchdog/cadence.hpp"
#include "watchdog/loop_stall.hpp"

namespace lastgood::watchdog {

class Scheduler final : private probes::RunSink {
 public:
  // Called on the loop after every run with how late (seconds) the run started.
  using Sink = std::function<void(size_t probe_index, probes::ProbeResult&&, double lateness_s)>;  // the result is the sink's to keep
  using SkipSink = std::function<void(size_t probe_index, int skipped)>;

  Scheduler(boost::asio::io_context& ioc, Sink sink, SkipSink on_skip = {});
  ~Scheduler();

  // Before start(), or after it (a reload: its first run is planned at once, within an interval).
  size_t add(std::unique_ptr<probes::Probe> probe);
  // Room for n probes in all (no slack left from growing one at a time).
  void reserve(size_t n) { entries_.reserve(n); }
  // A reload removed the probe: no run starts again; a run in flight ends without a result, and
  // the probe (its kept-alive connection) is released.
  void retire(size_t index);
  void start();
  void stop();
  // Called on each loop tick: its lateness in seconds (lastgood_event_loop_lag_seconds), the runs
  // in flight and the admission limit (0: none).
  using TickSink = std::function<void(double lag_s, size_t in_flight, size_t limit)>;
  void on_tick(TickSink f) { on_tick_ = std::move(f); }
  // The tick's period: the shortest stall it sees. While runs are in flight only (an idle sidecar
  // does not wake up for it).
  static constexpr std::chrono::milliseconds kTick{20};
  // Admission under overload: watchdog/loop_stall.hpp's Admission.
  size_t in_flight() const { return in_flight_; }
  size_t in_flight_limit() const { return admission_.capped() ? admission_.limit() : 0; }
  bool running() const { return running_; }
  size_t size() const { return entries_.size(); }

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    std::unique_ptr<probes::Probe> probe;
    Cadence cadence;
    Clock::time_point planned{};
    Clock::time_point started{};  // of the run in flight
    float lateness = 0;  // of the run in flight, in seconds
    bool in_flight = false;
    bool retired = false;
  };
  struct Due {
    Clock::time_point at;
    std::uint32_t index;
    bool operator>(const Due& o) const { return at > o.at || (at == o.at && index > o.index); }
  };

  void arm();
  void wake();
  void launch(std::uint32_t index, Clock::time_point now);
  boost::asio::awaitable<void> run_one(std::uint32_t index);
  probes::ProbeResult error_result(std::uint32_t index, std::string reason) const;
  void finished(std::uint32_t index, probes::ProbeResult&& r);  // lateness: the entry's
  void run_done(std::uint32_t index, probes::ProbeResult&& r) override;
  void plan(std::uint32_t index, Clock::time_point at);
  void arm_tick(Clock::time_point from);
  // Marks a run during which the loop itself was behind (watchdog/loop_stall.hpp).
  static void discount_stall(probes::ProbeResult& r, Clock::duration stall);

  boost::asio::io_context& ioc_;
  Sink sink_;
  SkipSink on_skip_;
  std::vector<Entry> entries_;
  std::vector<Due> due_;  // a min-heap by time (std::push_heap with greater)
  boost::asio::steady_timer timer_;
  Clock::time_point armed_for_ = Clock::time_point::max();
  boost::asio::steady_timer tick_;
  Clock::time_point tick_due_ = Clock::time_point::max();  // max: no tick pending
  StallLog stalls_;
  size_t in_flight_ = 0;
  Admission admission_;
  void admit(Clock::duration lag, Clock::time_point now);
  TickSink on_tick_;
  net::Lifetime life_;  // the runs in flight and the timer's handler; ended by stop()
  std::mt19937_64 rng_{std::random_device{}()};
  std::uniform_real_distribution<double> uni_{0.0, 1.0};
  bool running_ = false;
};

}  // namespace lastgood::watchdog
