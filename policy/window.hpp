#pragma once
// Time windows over a probe's results. One SampleWindow per (service, probe) holds the samples
// (a ring buffer that doubles when full: O(1) push and pop, and no allocation once it has reached
// the window's size, so 10 000 probes cause no allocator churn); each rule keeps SlidingCounts
// over it that add the new sample and drop those that left their window, so evaluating a rule is O(1) amortised whatever
// the window's size (3600 samples for 1 h at 1 s cost the same as 10).
#include <cstdint>
#include <vector>

#include "policy/types.hpp"

namespace lastgood::policy {

class SampleWindow {
 public:
  void push(const Sample& s) {
    if (size_ == ring_.size()) grow();
    ring_[(head_ + size_) & (ring_.size() - 1)] = s;
    ++size_;
  }
  std::uint64_t begin_seq() const { return first_seq_; }
  std::uint64_t end_seq() const { return first_seq_ + size_; }
  const Sample& at(std::uint64_t seq) const { return ring_[(head_ + static_cast<size_t>(seq - first_seq_)) & (ring_.size() - 1)]; }
  size_t size() const { return size_; }
  // Drops samples at or before `cutoff`, but never past `keep_from` (a counter still needs them).
  void prune(TimePoint cutoff, std::uint64_t keep_from) {
    while (size_ > 0 && first_seq_ < keep_from && ring_[head_].at <= cutoff) {
      head_ = (head_ + 1) & (ring_.size() - 1);
      --size_;
      ++first_seq_;
    }
  }
  template <typename F>
  void for_each_since(std::uint64_t seq, F f) const {
    for (auto s = std::max(seq, first_seq_); s < end_seq(); ++s) f(at(s));
  }

 private:
  void grow() {  // capacity stays a power of two so that indexing is a mask
    std::vector<Sample> bigger(ring_.empty() ? 4 : ring_.size() * 2);
    for (size_t i = 0; i < size_; ++i) bigger[i] = ring_[(head_ + i) & (ring_.size() - 1)];
    ring_.swap(bigger);
    head_ = 0;
  }

  std::vector<Sample> ring_;
  size_t head_ = 0, size_ = 0;
  std::uint64_t first_seq_ = 0;
};

struct Counts {
  int ok = 0, fail = 0, error = 0;
  int slow = 0;  // judged samples (ok or fail) with latency above the counter's threshold
  int unknown_latency = 0;  // judged samples whose latency holds the watcher's own stall (Sample::latency_known)
  int judged() const { return ok + fail; }
  int timed() const { return ok + fail - unknown_latency; }  // judged samples with a latency to judge
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
    if (s.outcome == SampleOutcome::error) return;
    if (!s.latency_known) c_.unknown_latency += d;
    else if (slow_above_ms_ >= 0 && s.latency_ms > slow_above_ms_) c_.slow += d;
  }
  Duration width_{0};
  double slow_above_ms_ = -1;
  std::uint64_t start_ = 0;
  Counts c_;
};

}  // namespace lastgood::policy
