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

  explicit Cadence(Duration interval, double jitter = 0.10) : interval_(interval), jitter_(jitter) {}

  // The first run: a random offset in [0, interval) so that many probes do not start together.
  TimePoint first(TimePoint now, double u) const {
    return now + std::chrono::duration_cast<Duration>(interval_ * std::clamp(u, 0.0, 0.999999));
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
    return n;
  }

  Duration interval() const { return interval_; }
  double jitter() const { return jitter_; }

 private:
  Duration interval_;
  double jitter_;
};

}  // namespace lastgood::watchdog
