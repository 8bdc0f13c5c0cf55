#pragma once
// Which release is live, since when, what came before, and which releases were verified good
// (live and healthy for `good_after`). The rollback target is the most recently good release
// that is not the live one: never merely "the previous one".
#include <optional>
#include <string>
#include <vector>

#include "policy/types.hpp"

namespace lastgood::policy {

struct Release {
  std::string id;
  TimePoint deployed_at;                   // from the source when it says so, else first observed
  bool deployed_at_from_source = false;
  bool migration = false;                  // carries a data migration: humans only
  std::optional<TimePoint> verified_at;    // first time it was verified good
  std::optional<TimePoint> last_good_at;   // last time it was live and verified good
};

// A release a person marked bad: never a rollback target again.
struct BadMark {
  std::string by, reason;
  TimePoint at;
};

// A release the deployment itself lists (an older `releases/` folder, an npm version, a Firebase
// release), whether or not lastgood saw it live.
struct Offered {
  std::string id;
  std::optional<TimePoint> deployed_at;
};

class DeploymentTracker {
 public:
  static constexpr size_t kMaxHistory = 64;
  static constexpr size_t kMaxBad = 256;

  // The deployment's live release as read at `now`. Returns true when the live release changed.
  bool observe(const std::string& id, std::optional<TimePoint> deployed_at, TimePoint now, bool migration = false);
  // A result of a (non-reference) probe on the live release: ok results are the evidence a
  // release needs to be verified good; a failure restarts its good_after; an error (the watcher
  // could not judge) is neither.
  void sample(SampleOutcome o);
  // The service's health at `now` (no trigger pending or firing). Returns true when the live
  // release just became verified good: healthy for good_after, with no failure in that time and
  // at least `min_ok` ok results (design.md: verified good only on evidence). With `may_verify`
  // false (lastgood cannot record now) health is still followed but nothing is verified.
  bool health(bool healthy, TimePoint now, Duration good_after, int min_ok = 1, bool may_verify = true);

  const Release* live() const { return live_ < 0 ? nullptr : &history_[static_cast<size_t>(live_)]; }
  // The most recently good release, live or not.
  const Release* last_good() const;
  // The most recently good release that is not live; nullptr when none is known.
  const Release* rollback_target() const;
  const std::vector<Release>& history() const { return history_; }
  bool known(const std::string& id) const;
  // The deployment kind's own list of releases, oldest first, as read now (the newest kMaxHistory
  // kept): what a fresh install can offer before anything was verified good.
  void offer(std::vector<Offered> releases);
  bool offered(const std::string& id) const;
  // Cold start (design.md): with no verified good release to roll back to, the newest release
  // the deployment offers that is older than the live one (made or deployed before it), not live,
  // not marked bad. It is unverified: a breach only ever proposes a rollback to it.
  std::optional<Offered> unverified_target() const;
  // Replay: the release was verified good at `at` (from the ledger).
  void mark_good(const std::string& id, TimePoint at);
  // A person marked the release bad (it need not have been seen yet): it is never a rollback
  // target or the last good release again. Kept for the last kMaxBad releases marked.
  void mark_bad(const std::string& id, BadMark mark);
  const BadMark* bad(const std::string& id) const;
  const std::vector<std::pair<std::string, BadMark>>& bad_marks() const { return bad_; }
  // What the ledger says of the releases (a ledger snapshot: watchdog/pipeline/checkpoint.hpp):
  // the history, the bad marks and which release is live. What only live observation knows (the
  // offered list, health since when) is not part of it.
  struct Saved {
    std::vector<Release> history;
    std::vector<std::pair<std::string, BadMark>> bad;
    int live = -1;
  };
  Saved saved() const { return Saved{history_, bad_, live_}; }
  void restore(Saved s) {
    history_ = std::move(s.history);
    bad_ = std::move(s.bad);
    live_ = s.live >= 0 && static_cast<size_t>(s.live) < history_.size() ? s.live : (history_.empty() ? -1 : static_cast<int>(history_.size()) - 1);
    healthy_since_.reset();
    ok_since_ = 0;
  }
  // A release named by the config as carrying a migration (ServicePolicy: on restore).
  void mark_migration(const std::string& id) {
    for (auto& r : history_)
      if (r.id == id) r.migration = true;
  }

 private:
  std::vector<Release> history_;  // in order of first going live
  std::vector<std::pair<std::string, BadMark>> bad_;  // in the order marked
  std::vector<Offered> offered_;  // oldest first
  int live_ = -1;
  std::optional<TimePoint> healthy_since_;
  int ok_since_ = 0;  // ok results since healthy_since_ (or since the release went live)
};

}  // namespace lastgood::policy
