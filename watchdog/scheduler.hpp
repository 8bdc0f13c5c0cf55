#pragma once
// Runs every probe on its own interval (±10% jitter, planned on a slot grid sized from the total
// rate: Cadence::grid_for) on one io_context. A probe's runs never
// overlap (each loop awaits its run before planning the next); each run is bounded by the
// probe's own deadline. stop() cancels the waits; in-flight runs are abandoned with the loop.
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "probes/probe.hpp"

namespace lastgood::watchdog {

class Scheduler {
 public:
  // Called on the loop after every run with how late (seconds) the run started.
  using Sink = std::function<void(size_t probe_index, probes::ProbeResult&&, double lateness_s)>;  // the result is the sink's to keep
  using SkipSink = std::function<void(size_t probe_index, int skipped)>;

  Scheduler(boost::asio::io_context& ioc, Sink sink, SkipSink on_skip = {});
  ~Scheduler();

  size_t add(std::unique_ptr<probes::Probe> probe);  // before start()
  void start();
  void stop();
  bool running() const { return running_; }
  size_t size() const { return entries_.size(); }

 private:
  struct Entry;
  boost::asio::awaitable<void> loop(Entry& e, size_t index);

  boost::asio::io_context& ioc_;
  Sink sink_;
  SkipSink on_skip_;
  std::vector<std::unique_ptr<Entry>> entries_;
  std::mt19937_64 rng_{std::random_device{}()};
  bool running_ = false;
};

}  // namespace lastgood::watchdog
