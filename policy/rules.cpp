#include "policy/rules.hpp"

#include <algorithm>
#include <cmath>

namespace lastgood::policy {

namespace {
// Verdict helpers.
Verdict inconclusive(Evidence e) { return {true, false, std::move(e)}; }
Verdict judged(bool breached, Evidence e) { return {false, breached, std::move(e)}; }
}  // namespace

RuleState::Kind RuleState::kind_of(const std::string& k) {
  if (k == "consecutive_failures") return Kind::consecutive_failures;
  if (k == "x_of_y") return Kind::x_of_y;
  if (k == "error_rate") return Kind::error_rate;
  if (k == "latency") return Kind::latency;
  if (k == "burn_rate") return Kind::burn_rate;
  if (k == "spread") return Kind::spread;
  return Kind::condition;
}

// The name of what a rule measures, for evidence. Made when describing (transitions, decisions,
// views), not kept: a string per rule was 64 bytes per trigger and probe.
std::string RuleState::measure() const {
  switch (kind_) {
    case Kind::consecutive_failures: return "consecutive_failures";
    case Kind::x_of_y: return "failures_of_last_" + std::to_string(rule_.of);
    case Kind::error_rate: return "error_rate";
    case Kind::latency: {
      char name[32];
      std::snprintf(name, sizeof name, "p%g_latency_ms", rule_.percentile);
      return name;
    }
    case Kind::burn_rate: return "burn_rate";
    case Kind::spread: return "failing_share";
    case Kind::condition: return "condition_failed:" + rule_.condition;
  }
  return rule_.kind;
}

RuleState::RuleState(const Rule& rule, const SampleWindow& w) : rule_(rule), kind_(kind_of(rule.kind)) {
  condition_bit_ = condition_bit(rule.condition);
  if (kind_ == Kind::x_of_y) ring_.assign(static_cast<size_t>(std::max(rule.of, 1)), false);
  if (kind_ == Kind::error_rate) counters_.emplace_back(rule.window);
  if (kind_ == Kind::latency) counters_.emplace_back(rule.window, static_cast<double>(rule.max_latency.count()));
  if (kind_ == Kind::burn_rate) {
    for (const auto& bw : rule.burn_windows) {
      counters_.emplace_back(bw.long_window);
      counters_.emplace_back(bw.short_window);
    }
  }
  for (auto& c : counters_) c.attach(w);
}

Duration RuleState::lookback() const {
  Duration d{0};
  for (const auto& c : counters_) d = std::max(d, c.width());
  return d;
}

std::uint64_t RuleState::oldest_needed(std::uint64_t fallback) const {
  std::uint64_t m = fallback;
  for (const auto& c : counters_) m = std::min(m, c.start());
  return m;
}

void RuleState::reset() {
  if (kind_ == Kind::x_of_y) {
    std::fill(ring_.begin(), ring_.end(), false);
    ring_pos_ = ring_fill_ = 0;
    ring_fails_ = 0;
  }
}

void RuleState::add(const Sample& s) {
  for (auto& c : counters_) c.add(s);
  last_failed_ = s.outcome == SampleOutcome::fail ? s.failed_conditions : 0;
  has_last_ = s.outcome != SampleOutcome::error || has_last_;
  if (s.outcome == SampleOutcome::error) {
    ++trailing_errors_;
    return;  // the probe could not judge: neither a failure nor a success
  }
  trailing_errors_ = 0;
  judged_any_ = true;
  const bool fail = s.outcome == SampleOutcome::fail;
  consecutive_fail_ = fail ? consecutive_fail_ + 1 : 0;
  if (!ring_.empty()) {
    if (ring_fill_ == ring_.size()) ring_fails_ -= ring_[ring_pos_] ? 1 : 0;
    else ++ring_fill_;
    ring_[ring_pos_] = fail;
    ring_fails_ += fail ? 1 : 0;
    ring_pos_ = (ring_pos_ + 1) % ring_.size();
  }
}

Verdict RuleState::evaluate(const SampleWindow& w, TimePoint now) {
  for (auto& c : counters_) c.advance(w, now);
  Evidence e;  // numbers only; describe() adds the names
  const auto& r = rule_;
  switch (kind_) {
    case Kind::consecutive_failures:
      e.value = consecutive_fail_;
      e.threshold = r.count;
      e.samples = consecutive_fail_;
      e.errors = trailing_errors_;
      if (!judged_any_ || trailing_errors_ >= r.count) return inconclusive(e);
      return judged(consecutive_fail_ >= r.count, e);
    case Kind::x_of_y:
      e.value = ring_fails_;
      e.threshold = r.failures;
      e.samples = static_cast<int>(ring_fill_);
      e.errors = trailing_errors_;
      if (!judged_any_ || trailing_errors_ >= r.of) return inconclusive(e);
      return judged(ring_fails_ >= r.failures, e);
    case Kind::error_rate:
    case Kind::latency: {
      const Counts& c = counters_[0].counts();
      e.window = r.window;
      e.samples = c.judged();
      e.errors = c.error;
      const bool blind = c.total() > 0 && static_cast<double>(c.error) / c.total() > r.max_error_share;
      if (kind_ == Kind::error_rate) {
        e.threshold = r.max;
        e.value = c.judged() ? static_cast<double>(c.fail) / c.judged() : 0.0;
        if (c.judged() < std::max(r.min_samples, 1) || blind) return inconclusive(e);
        return judged(e.value > r.max, e);
      }
      // Samples whose latency holds lastgood's own stall are no latency sample: fewer than
      // min_samples without them, or too large a share of them, is inconclusive.
      e.threshold = static_cast<double>(r.max_latency.count());
      e.samples = c.timed();
      const bool stalled = c.total() > 0 && static_cast<double>(c.error + c.unknown_latency) / c.total() > r.max_error_share;
      if (c.timed() < std::max(r.min_samples, 1) || blind || stalled) return inconclusive(e);
      // Nearest-rank percentile p is above max  <=>  fewer than ceil(p% * n) samples are <= max.
      const int n = c.timed();
      const int rank = static_cast<int>(std::ceil(r.percentile / 100.0 * n - 1e-9));
      const bool breached = (n - c.slow) < rank;
      // The exact value costs O(window): measured only on a breach (and by describe()).
      if (breached) e.value = percentile_ms(w, now, r.window, r.percentile);
      return judged(breached, e);
    }
    case Kind::burn_rate: {
      const double budget = 1.0 - r.slo;
      bool any_breach = false, any_data = false;
      double best = -1;
      for (size_t i = 0; i < r.burn_windows.size(); ++i) {
        const auto& bw = r.burn_windows[i];
        const Counts& lc = counters_[2 * i].counts();
        const Counts& sc = counters_[2 * i + 1].counts();
        if (lc.judged() == 0 || sc.judged() == 0) continue;
        any_data = true;
        const double level = std::min(static_cast<double>(lc.fail) / lc.judged(), static_cast<double>(sc.fail) / sc.judged()) / budget;
        const bool fires = level > bw.factor;
        // Evidence: the first pair that fires (configs list the fast pair first), else the closest.
        if ((fires && !any_breach) || (!any_breach && level / bw.factor > best)) {
          best = level / bw.factor;
          e.value = level;
          e.threshold = bw.factor;
          e.window = bw.long_window;
          e.samples = lc.judged();
          e.errors = lc.error;
        }
        any_breach = any_breach || fires;
      }
      if (!any_data) return inconclusive(e);
      return judged(any_breach, e);
    }
    case Kind::condition:
      e.threshold = 1;
      e.value = (last_failed_ & condition_bit_) ? 1 : 0;
      e.samples = has_last_ ? 1 : 0;
      if (!has_last_) return inconclusive(e);
      return judged(e.value > 0, e);
    case Kind::spread: break;  // judged per service, not per probe
  }
  return inconclusive(e);
}

void RuleState::describe(Evidence& e, const SampleWindow& w, TimePoint now) const {
  e.measure = measure();
  if (kind_ == Kind::latency && e.value == 0 && e.samples > 0) e.value = percentile_ms(w, now, rule_.window, rule_.percentile);
  if (kind_ == Kind::burn_rate) {
    const double budget = 1.0 - rule_.slo;
    e.detail.clear();
    for (size_t i = 0; i < rule_.burn_windows.size(); ++i) {
      const auto& bw = rule_.burn_windows[i];
      const Counts& lc = counters_[2 * i].counts();
      const Counts& sc = counters_[2 * i + 1].counts();
      const double lb = lc.judged() ? static_cast<double>(lc.fail) / lc.judged() / budget : 0;
      const double sb = sc.judged() ? static_cast<double>(sc.fail) / sc.judged() / budget : 0;
      char d[160];
      std::snprintf(d, sizeof d, "%s%.3gx over %llds and %.3gx over %llds (factor %.3g)", e.detail.empty() ? "" : "; ", lb,
                    static_cast<long long>(bw.long_window.count() / 1000), sb, static_cast<long long>(bw.short_window.count() / 1000),
                    bw.factor);
      e.detail += d;
    }
  }
}

double percentile_ms(const SampleWindow& w, TimePoint now, Duration window, double percentile) {
  std::vector<double> v;
  const TimePoint cutoff = now - window;
  w.for_each_since(w.begin_seq(), [&](const Sample& s) {
    if (s.at > cutoff && s.outcome != SampleOutcome::error && s.latency_known) v.push_back(s.latency_ms);
  });
  if (v.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(percentile / 100.0 * static_cast<double>(v.size()) - 1e-9));
  rank = std::clamp<size_t>(rank, 1, v.size());
  std::nth_element(v.begin(), v.begin() + static_cast<long>(rank - 1), v.end());
  return v[rank - 1];
}

}  // namespace lastgood::policy
