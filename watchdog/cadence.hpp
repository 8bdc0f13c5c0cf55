#pragma once
// When a probe runs next. Pure arithmetic over time points so it is tested with a fake clock;
// the Asio scheduler only sleeps until the time this returns.
#include <algorithm>
#include <chrono>

namespace lastgood::watchdog {

class Cadence {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;
  using Duration = Clock::duration;

  // grid: runs are planned on multiples of it (of the clock's epoch), zero for none.
  explicit Cadence(Duration interval, double jitter = 0.10, Duration grid = Duration::zero())
      : interval_(interval), jitter_(jitter), grid_(grid) {}

  // The grid a scheduler plans runs on, given a probe's interval and the scheduled probes per
  // second over all probes. Runs that fall in one slot start in one wake-up of the loop: on a VM a
  // wake-up costs 20-120 us of CPU before any work, more than a keep-alive probe itself (see
  // docs/benchmarks.md). The slot is at most a tenth of the interval and holds about
  // kPerSlot runs on average, so a slot's burst stays a few milliseconds long. Slots divide
  // 100 ms, the service tick, so ticks share the same wake-ups.
  static constexpr double kPerSlot = 100.0;
  static Duration grid_for(Duration interval, double probes_per_second) {
    using namespace std::chrono_literals;
    Duration bound = interval / 10;
    if (probes_per_second > 0)
      bound = std::min(bound, std::chrono::duration_cast<Duration>(std::chrono::duration<double>(kPerSlot / probes_per_second)));
    for (Duration g : {Duration(100ms), Duration(50ms), Duration(20ms), Duration(10ms), Duration(5ms), Duration(2ms), Duration(1ms)})
      if (g <= bound) return g;
    return Duration::zero();
  }

  // The first run: a random offset in [0, spread) so that many probes do not start together;
  // spread is the interval unless the caller widens it (first_spread).
  TimePoint first(TimePoint now, double u, Duration spread = Duration::zero()) const {
    const Duration over = std::max(spread, interval_);
    return at_or_after(nearest(now + std::chrono::duration_cast<Duration>(over * std::clamp(u, 0.0, 0.999999))), now);
  }

  // How widely a scheduler spreads the first runs of `probes` probes. A first run opens a
  // connection, several times the cost of a later run on a kept-alive one: 10 000 of them within
  // one second kept the loop saturated for two seconds, every run late and thousands in flight at
  // once (tens of MB of coroutine frames). First runs are spread to at most kFirstRunsPerSecond.
  static constexpr double kFirstRunsPerSecond = 4000.0;
  static Duration first_spread(size_t probes) {
    return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(static_cast<double>(probes) / kFirstRunsPerSecond));
  }

  // The next run after one planned for `planned` that ended at `finished`: one interval later,
  // scaled by a factor in [1 - jitter, 1 + jitter] drawn from u in [0, 1). Never before
  // `finished`, so a probe never overlaps its own previous run; slots an overrunning probe
  // missed are skipped (counted by the caller), not run back to back.
  TimePoint next(TimePoint planned, TimePoint finished, double u, int* skipped = nullptr) const {
    const double factor = 1.0 + jitter_ * (2.0 * std::clamp(u, 0.0, 1.0) - 1.0);
    TimePoint n = planned + std::chrono::duration_cast<Duration>(interval_ * factor);
    int missed = 0;
    if (n < finished) {
      auto behind = finished - n;
      auto k = behind / interval_ + 1;
      n += interval_ * k;
      missed = static_cast<int>(k);
    }
    if (skipped) *skipped = missed;
    // The nearest grid point (so the average gap stays one interval), but never before `finished`.
    return at_or_after(nearest(n), finished);
  }

  // The grid point nearest to t.
  TimePoint nearest(TimePoint t) const {
    if (grid_ <= Duration::zero()) return t;
    const auto since = t.time_since_epoch();
    return TimePoint((since + grid_ / 2) / grid_ * grid_);
  }
  // t, or when t is before `bound`, the first grid point at or after `bound`.
  TimePoint at_or_after(TimePoint t, TimePoint bound) const {
    if (t >= bound) return t;
    if (grid_ <= Duration::zero()) return bound;
    const auto since = bound.time_since_epoch();
    const auto floor = since / grid_ * grid_;
    return TimePoint(floor == since ? since : floor + grid_);
  }

  Duration interval() const { return interval_; }
  double jitter() const { return jitter_; }
  Duration grid() const { return grid_; }

 private:
  Duration interval_;
  double jitter_;
  Duration grid_;
};

}  // namespace lastgood::watchdog
