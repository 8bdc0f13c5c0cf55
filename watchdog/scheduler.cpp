#include "watchdog/scheduler.hpp"

#include <algorithm>
#include <cstdio>
#include <functional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include "net/supervise.hpp"

namespace lastgood::watchdog {

namespace asio = boost::asio;

Scheduler::Scheduler(asio::io_context& ioc, Sink sink, SkipSink on_skip)
    : ioc_(ioc), sink_(std::move(sink)), on_skip_(std::move(on_skip)), timer_(ioc), tick_(ioc) {}

Scheduler::~Scheduler() { stop(); }

size_t Scheduler::add(std::unique_ptr<probes::Probe> probe) {
  auto interval = std::chrono::duration_cast<Clock::duration>(probe->spec().interval);
  entries_.push_back(Entry{std::move(probe), Cadence(interval), {}});
  const auto index = static_cast<std::uint32_t>(entries_.size() - 1);
  if (running_) {  // added by a reload: spread over its first interval
    plan(index, Clock::now() + std::chrono::duration_cast<Clock::duration>(interval * uni_(rng_)));
    arm();
  }
  return index;
}

void Scheduler::retire(size_t index) {
  auto& e = entries_[index];
  e.retired = true;
  if (!e.in_flight) e.probe.reset();  // else when its run ends (finished)
}

void Scheduler::start() {
  running_ = true;
  // Runs are planned on a grid sized from the total rate (Cadence::grid_for): probes due in the
  // same slot start in one wake-up. The planned time is the grid point, so lateness measures the
  // loop's own delay.
  double rate = 0;
  for (const auto& e : entries_) rate += 1.0 / std::chrono::duration<double>(e.cadence.interval()).count();
  const auto now = Clock::now();
  const auto spread = Cadence::first_spread(entries_.size());
  due_.reserve(entries_.size());
  for (std::uint32_t i = 0; i < entries_.size(); ++i) {
    auto& e = entries_[i];
    const auto interval = e.cadence.interval();
    e.cadence = Cadence(interval, e.cadence.jitter(), Cadence::grid_for(interval, rate));
    plan(i, e.cadence.first(now, uni_(rng_), spread));
  }
  arm();
}

void Scheduler::stop() {
  running_ = false;
  timer_.cancel();
  tick_.cancel();
  tick_due_ = Clock::time_point::max();
  in_flight_ = 0;
  admission_.lift();
  life_.end();  // runs in flight are cancelled
  due_.clear();
  armed_for_ = Clock::time_point::max();
}

void Scheduler::plan(std::uint32_t index, Clock::time_point at) {
  entries_[index].planned = at;
  due_.push_back(Due{at, index});
  std::push_heap(due_.begin(), due_.end(), std::greater<>{});
}

// Sets the timer for the earliest due run, unless it is already set for that time (each run's end
// plans the next run, mostly later than what is already due; re-arming costs a cancel).
void Scheduler::arm() {
  if (!running_ || due_.empty()) return;
  const auto at = due_.front().at;
  // At the admission limit with a run already due: the next run's end arms it (finished()).
  if (in_flight_ >= admission_.limit() && at <= Clock::now()) return;
  if (at == armed_for_) return;
  armed_for_ = at;
  timer_.expires_at(at);
  timer_.async_wait([this, alive = life_.watch()](boost::system::error_code ec) {
    if (ec || alive.expired()) return;  // cancelled: re-armed or stopped
    net::guarded("scheduler", [&] { wake(); });
    net::guarded("scheduler", [&] { arm(); });  // whatever wake() did, the next run stays planned
  });
}

void Scheduler::wake() {
  armed_for_ = Clock::time_point::max();
  const auto now = Clock::now();
  while (running_ && !due_.empty() && due_.front().at <= now && in_flight_ < admission_.limit()) {
    std::pop_heap(due_.begin(), due_.end(), std::greater<>{});
    const auto index = due_.back().index;
    due_.pop_back();
    if (entries_[index].retired) continue;  // removed by a reload: not run again
    launch(index, now);
  }
  arm();
}

// A probe that can run without a coroutine (Probe::start: the HTTP probe's kept-alive steady
// state) reports to run_done(); the others, and that one's first run, go through run_one().
void Scheduler::launch(std::uint32_t index, Clock::time_point now) {
  auto& e = entries_[index];
  e.lateness = std::chrono::duration<float>(now - e.planned).count();
  e.started = now;
  e.in_flight = true;
  if (in_flight_++ == 0 && tick_due_ == Clock::time_point::max()) arm_tick(now);
  bool started = false;
  net::guarded("probe", [&] { started = e.probe->start(*this, index); });
  if (started) return;
  // run_one() catches what the probe throws; what escapes it (the sink) is counted, not lost.
  net::spawn(ioc_.get_executor(), run_one(index), "scheduler", life_);
}

void Scheduler::run_done(std::uint32_t index, probes::ProbeResult&& r) {
  if (!running_) return;  // stopped: as run_one() drops a result
  finished(index, std::move(r));
}

// One run: awaits the probe and hands the result on. Its own small coroutine rather than
// co_spawn(probe->run(), handler): the result then moves from the probe's frame straight to the
// sink, not through co_spawn's result slot and handler (a ProbeResult move per hop, per run).
asio::awaitable<void> Scheduler::run_one(std::uint32_t index) {
  const auto alive = life_.watch();
  std::optional<probes::ProbeResult> r;  // made in place from the probe's result: no move-assignment
  try {
    r.emplace(co_await entries_[index].probe->run());
  } catch (const std::exception& ex) {  // a probe bug must not end its schedule
    r.emplace(error_result(index, std::string("internal error: ") + ex.what()));
  } catch (...) {
    r.emplace(error_result(index, "internal error"));
  }
  if (alive.expired() || !running_) co_return;
  finished(index, std::move(*r));
}

probes::ProbeResult Scheduler::error_result(std::uint32_t index, std::string reason) const {
  probes::ProbeResult r;
  r.probe = entries_[index].probe->spec().name;
  r.started_at = std::chrono::system_clock::now();
  r.outcome = probes::Outcome::error;
  r.reason = std::move(reason);
  return r;
}

// The loop's own lateness, measured by a tick that runs while any probe run is in flight: what
// makes a run's deadline pass without the target being slow (a saturated or starved loop).
void Scheduler::arm_tick(Clock::time_point from) {
  tick_due_ = from + kTick;
  tick_.expires_at(tick_due_);
  tick_.async_wait([this, alive = life_.watch()](boost::system::error_code ec) {
    if (ec || alive.expired()) return;
    const auto ran = Clock::now();
    stalls_.record(tick_due_, ran);
    admit(ran - tick_due_, ran);
    if (on_tick_) net::guarded("scheduler", [&] { on_tick_(std::chrono::duration<double>(ran - tick_due_).count(), in_flight_, in_flight_limit()); });
    if (in_flight_ > 0 && running_) arm_tick(ran);
    else tick_due_ = Clock::time_point::max();
  });
}

void Scheduler::admit(Clock::duration lag, Clock::time_point now) {
  switch (admission_.tick(lag, now, in_flight_, entries_.size())) {
    case Admission::Change::capped:
      spdlog::warn("lastgood's event loop is {} ms behind: at most {} probe runs at once from now on (the rest start late, counted in "
                   "lastgood_schedule_lateness_seconds); lifted when it keeps up",
                   std::chrono::duration_cast<std::chrono::milliseconds>(lag).count(), admission_.limit());
      break;
    case Admission::Change::lifted:
      spdlog::info("lastgood's event loop keeps up again: probe runs are no longer limited");
      arm();
      break;
    case Admission::Change::raised:
      arm();
      break;
    default:
      break;
  }
}

void Scheduler::discount_stall(probes::ProbeResult& r, Clock::duration stall) {
  r.loop_stall_ms = std::chrono::duration<float, std::milli>(stall).count();
  if (r.outcome != probes::Outcome::fail) return;
  // Only a judgement of time is lastgood's: a 502 or a wrong body stays the target's.
  for (const auto& f : r.failures)
    if (f.condition != "timeout" && f.condition != "max_latency") return;
  char buf[96];
  std::snprintf(buf, sizeof buf, "lastgood's own event loop was %.0f ms behind during this run, so this is not the target's: ",
                static_cast<double>(r.loop_stall_ms));
  r.reason = buf + r.reason;
  r.outcome = probes::Outcome::error;
}

void Scheduler::finished(std::uint32_t index, probes::ProbeResult&& r) {
  entries_[index].in_flight = false;
  if (in_flight_ > 0) --in_flight_;
  {
    const auto now = Clock::now();
    const auto run = now - entries_[index].started;
    const auto stall = stalls_.stall(entries_[index].started, now, tick_due_);
    if (judge_stall(stall, run).timing_unreliable) discount_stall(r, stall);
  }
  if (entries_[index].retired) {
    // Released after this turn: this may run inside the probe's own callback.
    asio::post(ioc_, [p = std::shared_ptr<probes::Probe>(std::move(entries_[index].probe))] {});
    arm();  // its place under the admission cap is free: a due run may wait for it
    return;
  }
  // Whatever the sink does with the result (policy, ledger, metrics), the probe's next run is
  // planned: a throw there is counted and logged, never the silent end of a schedule.
  net::guarded("pipeline", [&] { sink_(index, std::move(r), entries_[index].lateness); });
  if (!running_) return;  // the sink may stop the scheduler
  auto& e = entries_[index];
  int skipped = 0;
  const auto next = e.cadence.next(e.planned, Clock::now(), uni_(rng_), &skipped);
  if (skipped && on_skip_) on_skip_(index, skipped);
  plan(index, next);
  arm();
}

}  // namespace lastgood::watchdog
