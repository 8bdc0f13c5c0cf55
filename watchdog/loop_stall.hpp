#pragma once
// How far behind lastgood's own event loop was during a probe run, so that lastgood's overload is
// never blamed on a target (issue 21): a run whose deadline passed while the loop was busy with
// other work may have had its answer waiting, unread, in the socket. Pure: no Asio, time passed in.
//
// The loop runs a tick now and then (Scheduler, while runs are in flight); each tick reports when
// it was due and when it ran. A tick that ran late means the loop was behind by that much over
// [due, ran]. stall(from, now, next_due) answers the longest such stretch within [from, now],
// counting a tick still overdue at `now`, in O(log n): the ticks are kept as a stack of
// decreasing lateness (a later tick at least as late hides an earlier one, for every `from` the
// later one also falls in).
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <deque>

namespace lastgood::watchdog {

class StallLog {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;
  using Duration = Clock::duration;

  // `keep`: how far back a query may reach (the longest probe run); older ticks are dropped.
  explicit StallLog(Duration keep = std::chrono::minutes(10)) : keep_(keep) {}

  // A tick due at `due` ran at `ran` (ran >= due; ticks in order of ran, each due after the
  // previous one ran).
  void record(TimePoint due, TimePoint ran) {
    const Duration lag = ran > due ? ran - due : Duration::zero();
    while (!ticks_.empty() && ticks_.back().lag <= lag) ticks_.pop_back();
    ticks_.push_back(Tick{ran, lag});
    while (!ticks_.empty() && ticks_.front().ran < ran - keep_) ticks_.pop_front();
  }

  // The longest the loop was behind within [from, now]. `next_due`: when the pending tick is due
  // (TimePoint::max() when none is pending); if it is overdue, the loop is behind right now.
  Duration stall(TimePoint from, TimePoint now, TimePoint next_due = TimePoint::max()) const {
    Duration worst = Duration::zero();
    if (next_due < now) worst = now - std::max(next_due, from);
    // The first kept tick that ran at or after `from` is the latest of all such ticks; only it
    // can have begun before `from` (a later one was due after an earlier one ran). The next kept
    // tick is the latest of the rest.
    auto it = std::lower_bound(ticks_.begin(), ticks_.end(), from, [](const Tick& t, TimePoint f) { return t.ran < f; });
    if (it != ticks_.end()) {
      worst = std::max(worst, std::min(it->lag, it->ran - from));
      if (++it != ticks_.end()) worst = std::max(worst, it->lag);
    }
    return worst;
  }

  size_t kept() const { return ticks_.size(); }

 private:
  struct Tick {
    TimePoint ran;
    Duration lag;
  };
  std::deque<Tick> ticks_;
  Duration keep_;
};

// What a run's result becomes when the loop stalled during it. A stall of at least a quarter of
// the run (and 10 ms) makes its timing lastgood's as much as the target's: a timeout then says
// nothing of the target (the run becomes `error`), and a latency says nothing either (it is left
// out of latency rules). Shorter stalls are noise against any sane latency threshold.
struct StallVerdict {
  bool timing_unreliable = false;
};
inline StallVerdict judge_stall(std::chrono::steady_clock::duration stall, std::chrono::steady_clock::duration run) {
  using namespace std::chrono_literals;
  return StallVerdict{stall >= 10ms && stall * 4 >= run};
}

// Admission under overload (issue 21): while the loop is more than kShedAbove behind, the runs in
// flight are capped, cut by a quarter (of the cap or of the runs in flight, whichever is lower) at
// most every kCutEvery, never under kMinInFlight; while it keeps up (lag below kKeepUp) the cap is
// raised by an eighth whenever it is what holds runs back, and lifted after kCalmTicks ticks in a
// row of keeping up (or once it is no lower than the number of probes). Runs past the cap start
// when others end: more runs than the loop can serve make probes late, never a pile of runs that
// all miss their deadlines in lastgood's own queue. Pure: time passed in.
class Admission {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kShedAbove{50};
  static constexpr std::chrono::milliseconds kKeepUp{10};
  static constexpr std::chrono::milliseconds kCutEvery{200};
  static constexpr std::size_t kMinInFlight = 32;
  static constexpr int kCalmTicks = 250;  // 5 s of 20 ms ticks
  static constexpr std::size_t kNoLimit = static_cast<std::size_t>(-1);

  enum class Change { none, capped, cut, raised, lifted };
  // One tick: the loop was `lag` behind at `now`, with `in_flight` runs out of `probes`.
  Change tick(Clock::duration lag, Clock::time_point now, std::size_t in_flight, std::size_t probes) {
    if (lag >= kKeepUp) calm_ = 0;
    if (lag > kShedAbove) {
      if (cut_once_ && now - last_cut_ < kCutEvery) return Change::none;
      cut_once_ = true;
      last_cut_ = now;
      const bool was_open = limit_ == kNoLimit;
      limit_ = std::max(kMinInFlight, std::min(limit_, in_flight) * 3 / 4);
      return was_open ? Change::capped : Change::cut;
    }
    if (limit_ == kNoLimit || lag >= kKeepUp) return Change::none;
    Change c = Change::none;
    if (in_flight + 8 >= limit_) {
      limit_ += std::max<std::size_t>(8, limit_ / 8);
      c = Change::raised;
    }
    if (limit_ >= probes || ++calm_ >= kCalmTicks) {
      lift();
      return Change::lifted;
    }
    return c;
  }
  void lift() {
    calm_ = 0;
    limit_ = kNoLimit;
  }
  // How many runs may be in flight (kNoLimit: no cap).
  std::size_t limit() const { return limit_; }
  bool capped() const { return limit_ != kNoLimit; }

 private:
  std::size_t limit_ = kNoLimit;
  Clock::time_point last_cut_{};
  bool cut_once_ = false;
  int calm_ = 0;
};

}  // namespace lastgood::watchdog
