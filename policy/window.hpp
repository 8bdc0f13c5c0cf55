#pragma once
// Time windows over a probe's results. One SampleWindow per (service, probe) holds the samples
// (a deque: amortised O(1) push and pop); each rule keeps SlidingCounts over it that add the new
// sample and drop those that left their window, so evaluating a rule is O(1) amortised whatever
// the window's size (3600 samples for 1 h at 1 s cost the same as 10).
#include <cstdint>
#include <deque>

#include "policy/types.hpp"

namespace lastgood::policy {

class SampleWindow {
 public:
  void push(const Sample& s) { samples_.push_back(s); }
  std::uint64_t begin_seq() const { return first_seq_; }
  std::uint64_t end_seq() const { return first_seq_ + samples_.size(); }
  const Sample& at(std::uint64_t seq) const { return samples_[static_cast<size_t>(seq - first_seq_)]; }
  size_t size() const { return samples_.size(); }
  // Drops samples at or before `cutoff`, but never past `keep_from` (a counter still needs them).
  void prune(TimePoint cutoff, std::uint64_t keep_from) {
    while (!samples_.empty() && first_seq_ < keep_from && samples_.front().at <= cutoff) {
      samples_.pop_front();
      ++first_seq_;
    }
  }
  template <typename F>
  void for_each_since(std::uint64_t seq, F f) const {
    for (auto s = std::max(seq, first_seq_); s < end_seq(); ++s) f(at(s));
  }

 private:
  std::deque<Sample> samples_;
  std::uint64_t first_seq_ = 0;
};

struct Counts {
  int ok = 0, fail = 0, error = 0;
  int slow = 0;  // judged samples (ok or fail) with latency above the counter's threshold
  int judged() const { return ok + fail; }
  int total() const { return ok + fail + error; }
};

// Counts of the samples in (now - width, now].
class SlidingCount {
 public:
  SlidingCount() = default;
  SlidingCount(Duration width, double slow_above_ms = -1) : width_(width), slow_above_ms_(slow_above_ms) {}

  // Call for each new sample, in order, after it was pushed to the window.
  void add(const Sample& s) { apply(s, +1); }
  // Drops samples that left the window by `now`.
  void advance(const SampleWindow& w, TimePoint now) {
    const TimePoint cutoff = now - width_;
    if (start_ < w.begin_seq()) start_ = w.begin_seq();  // never happens when pruning respects start()
    while (start_ < w.end_seq() && w.at(start_).at <= cutoff) {
      apply(w.at(start_), -1);
      ++start_;
    }
  }
  void attach(const SampleWindow& w) { start_ = w.end_seq(); }
  const Counts& counts() const { return c_; }
  std::uint64_t start() const { return start_; }
  Duration width() const { return width_; }

 private:
  void apply(const Sample& s, int d) {
    switch (s.outcome) {
      case SampleOutcome::ok: c_.ok += d; break;
      case SampleOutcome::fail: c_.fail += d; break;
      case SampleOutcome::error: c_.error += d; break;
    }
    if (s.outcome != SampleOutcome::error && slow_above_ms_ >= 0 && s.latency_ms > slow_above_ms_) c_.slow += d;
  }
  Duration width_{0};
  double slow_above_ms_ = -1;
  std::uint64_t start_ = 0;
  Counts c_;
};

}  // namespace lastgood::policy
