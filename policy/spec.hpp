#pragma once
// What the policy engine is told to enforce: triggers, rules, rollback limits, authority.
// Plain structs; config/ fills them from the config file, policy/ reads them.
#include <chrono>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace lastgood::policy {

using Duration = std::chrono::milliseconds;

enum class Severity { P0, P1, P2 };
const char* to_string(Severity s);

struct Rule {
  std::string kind;  // consecutive_failures | x_of_y | error_rate | latency | burn_rate | spread | condition
  int count = 0;                                         // consecutive_failures
  int failures = 0, of = 0;                              // x_of_y
  Duration window{0};                                    // error_rate, latency
  double max = 0;                                        // error_rate (ratio)
  int min_samples = 1;                                   // error_rate, latency: fewer -> inconclusive
  double max_error_share = 0.5;                          // more `error` results than this share -> inconclusive
  double percentile = 0;                                 // latency
  Duration max_latency{0};                               // latency ("max" as a duration)
  double slo = 0;                                        // burn_rate
  struct BurnWindow { Duration long_window, short_window; double factor; };
  std::vector<BurnWindow> burn_windows;                  // burn_rate
  double min_share = 0;                                  // spread
  std::string condition;                                 // condition (e.g. "body_contains", "integrity")
};

struct Trigger {
  std::string name;
  Severity severity = Severity::P1;
  std::optional<std::string> probe;                      // restrict to one probe; default: all but reference probes
  Rule rule;
  Duration for_{0};
  Duration recover_after{0};
  bool shadow = false;                                   // detect and count, never enforce
};

// A service's triggers, held once and shared by the config and every policy built from it (a copy
// per policy was about 330 bytes a service: the largest item of a 50 000-target sidecar's policy,
// docs/benchmarks.md). Read-only once shared: edit() copies a list that someone else also holds.
class TriggerList {
 public:
  TriggerList() = default;
  TriggerList(std::vector<Trigger> v) : p_(std::make_shared<std::vector<Trigger>>(std::move(v))) {}  // NOLINT: implicit, as a vector
  TriggerList(std::initializer_list<Trigger> l) : TriggerList(std::vector<Trigger>(l)) {}

  std::size_t size() const { return p_ ? p_->size() : 0; }
  bool empty() const { return size() == 0; }
  const Trigger& operator[](std::size_t i) const { return (*p_)[i]; }
  std::vector<Trigger>::const_iterator begin() const { return list().begin(); }
  std::vector<Trigger>::const_iterator end() const { return list().end(); }
  void push_back(Trigger t) { edit().push_back(std::move(t)); }
  // The list to change: this holder's own (copied first when it is shared).
  std::vector<Trigger>& edit() {
    if (!p_) p_ = std::make_shared<std::vector<Trigger>>();
    else if (p_.use_count() > 1) p_ = std::make_shared<std::vector<Trigger>>(*p_);
    return *p_;
  }
  // Whether two holders share one list (tests).
  bool shares_with(const TriggerList& o) const { return p_ && p_ == o.p_; }

 private:
  const std::vector<Trigger>& list() const {
    static const std::vector<Trigger> kNone;
    return p_ ? *p_ : kNone;
  }
  std::shared_ptr<std::vector<Trigger>> p_;
};

struct Verify {
  Duration within{5 * 60'000};
  int healthy_samples = 3;
};

struct Rollback {
  std::string mode = "approve";                          // alert | approve | auto
  Duration rollback_window{2 * 3'600'000};
  Duration cooldown{30 * 60'000};
  int max_per_day = 3;
  Duration good_after{10 * 60'000};
  Duration approval_timeout{30 * 60'000};
  Verify verify;
};

struct Authority {
  std::vector<std::string> roles;
  int quorum = 1;
  bool auto_ = false;
  // A proposal without quorum after `secondary_after` may also be approved by these roles
  // (the seed's secondary authority column); empty: none.
  std::vector<std::string> secondary_roles{};
  Duration secondary_after{0};
  Duration remind_every{0};  // re-send the pending notice this often while it waits; 0: never
};

}  // namespace lastgood::policy
