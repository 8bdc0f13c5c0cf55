#include "policy/rules.hpp"

#include <algorithm>
#include <cmath>

namespace lastgood::policy {

namespace {
// Verdict helpers.
Verdict inconclusive(Evidence e) { return {true, false, std::move(e)}; }
Verdict judged(bool breached, Evidence e) { return {false, breached, std::move(e)}; }
}  // namespace

RuleState::RuleState(const Rule& rule, const SampleWindow& w) : rule_(rule) {
  if (rule.kind == "x_of_y") ring_.assign(static_cast<size_t>(std::max(rule.of, 1)), false);
  if (rule.kind == "error_rate") counters_.emplace_back(rule.window);
  if (rule.kind == "latency") counters_.emplace_back(rule.window, static_cast<double>(rule.max_latency.count()));
  if (rule.kind == "burn_rate") {
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
  if (rule_.kind == "x_of_y") {
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
  Evidence e;
  const auto& r = rule_;
  if (r.kind == "consecutive_failures") {
    e.measure = "consecutive_failures";
    e.value = consecutive_fail_;
    e.threshold = r.count;
    e.samples = consecutive_fail_;
    e.errors = trailing_errors_;
    if (!judged_any_ || trailing_errors_ >= r.count) return inconclusive(e);
    return judged(consecutive_fail_ >= r.count, e);
  }
  if (r.kind == "x_of_y") {
    e.measure = "failures_of_last_" + std::to_string(r.of);
    e.value = ring_fails_;
    e.threshold = r.failures;
    e.samples = static_cast<int>(ring_fill_);
    e.errors = trailing_errors_;
    if (!judged_any_ || trailing_errors_ >= r.of) return inconclusive(e);
    return judged(ring_fails_ >= r.failures, e);
  }
  if (r.kind == "error_rate" || r.kind == "latency") {
    const Counts& c = counters_[0].counts();
    e.window = r.window;
    e.samples = c.judged();
    e.errors = c.error;
    const bool blind = c.total() > 0 && static_cast<double>(c.error) / c.total() > r.max_error_share;
    if (r.kind == "error_rate") {
      e.measure = "error_rate";
      e.threshold = r.max;
      e.value = c.judged() ? static_cast<double>(c.fail) / c.judged() : 0.0;
      if (c.judged() < std::max(r.min_samples, 1) || blind) return inconclusive(e);
      return judged(e.value > r.max, e);
    }
    char name[32];
    std::snprintf(name, sizeof name, "p%g_latency_ms", r.percentile);
    e.measure = name;
    e.threshold = static_cast<double>(r.max_latency.count());
    if (c.judged() < std::max(r.min_samples, 1) || blind) return inconclusive(e);
    // Nearest-rank percentile p is above max  <=>  fewer than ceil(p% * n) samples are <= max.
    const int n = c.judged();
    const int rank = static_cast<int>(std::ceil(r.percentile / 100.0 * n - 1e-9));
    const bool breached = (n - c.slow) < rank;
    // The exact value costs O(window); measure it only when it matters (a breach). The API
    // asks percentile_ms() for the current value when it shows the trigger.
    if (breached) e.value = percentile_ms(w, now, r.window, r.percentile);
    else e.detail = "at most " + std::to_string(c.slow) + " of " + std::to_string(n) + " samples above the max";
    return judged(breached, e);
  }
  if (r.kind == "burn_rate") {
    const double budget = 1.0 - r.slo;
    e.measure = "burn_rate";
    bool any_breach = false, any_data = false;
    double worst = 0;
    for (size_t i = 0; i < r.burn_windows.size(); ++i) {
      const auto& bw = r.burn_windows[i];
      const Counts& lc = counters_[2 * i].counts();
      const Counts& sc = counters_[2 * i + 1].counts();
      if (lc.judged() == 0 || sc.judged() == 0) continue;
      any_data = true;
      const double lb = static_cast<double>(lc.fail) / lc.judged() / budget;
      const double sb = static_cast<double>(sc.fail) / sc.judged() / budget;
      const bool fires = lb > bw.factor && sb > bw.factor;
      char d[160];
      std::snprintf(d, sizeof d, "%s%.3gx over %llds and %.3gx over %llds (factor %.3g)", e.detail.empty() ? "" : "; ", lb,
                    static_cast<long long>(bw.long_window.count() / 1000), sb, static_cast<long long>(bw.short_window.count() / 1000),
                    bw.factor);
      e.detail += d;
      const double level = std::min(lb, sb);
      if (fires && !any_breach) {  // the first pair that fires (configs list the fast pair first)
        any_breach = true;
        worst = level / bw.factor;
        e.value = level;
        e.threshold = bw.factor;
        e.window = bw.long_window;
        e.samples = lc.judged();
        e.errors = lc.error;
      } else if (!any_breach && level / bw.factor >= worst) {
        worst = level / bw.factor;
        e.value = level;
        e.threshold = bw.factor;
        e.window = bw.long_window;
        e.samples = lc.judged();
        e.errors = lc.error;
      }
    }
    if (!any_data) return inconclusive(e);
    return judged(any_breach, e);
  }
  if (r.kind == "condition") {
    e.measure = "condition_failed:" + r.condition;
    e.threshold = 1;
    e.value = (last_failed_ & condition_bit(r.condition)) ? 1 : 0;
    e.samples = has_last_ ? 1 : 0;
    if (!has_last_) return inconclusive(e);
    return judged(e.value > 0, e);
  }
  return inconclusive(e);  // spread is judged per service, not per probe
}

double percentile_ms(const SampleWindow& w, TimePoint now, Duration window, double percentile) {
  std::vector<double> v;
  const TimePoint cutoff = now - window;
  w.for_each_since(w.begin_seq(), [&](const Sample& s) {
    if (s.at > cutoff && s.outcome != SampleOutcome::error) v.push_back(s.latency_ms);
  });
  if (v.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(percentile / 100.0 * static_cast<double>(v.size()) - 1e-9));
  rank = std::clamp<size_t>(rank, 1, v.size());
  std::nth_element(v.begin(), v.begin() + static_cast<long>(rank - 1), v.end());
  return v[rank - 1];
}

}  // namespace lastgood::policy
