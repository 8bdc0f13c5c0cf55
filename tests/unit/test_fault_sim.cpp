// A randomized fault test (issue 14): over many seeds, a timeline of deploys by people, probe
// results (with the watcher's own errors), a disk that fills and empties (short writes and
// ENOSPC through the ledger's injectable writer), crashes at random points (the real ledger
// reopened and replayed into a new policy), and approvals. The rules that connect the policy and
// the ledger are those of watchdog/pipeline/: nothing is done that was not recorded first, a
// decision is held while nothing can be recorded and made again when the ledger takes entries,
// an action re-reads the live release before its switch, a restart reconciles an action that was
// started and never re-runs it.
//
// Invariants, for every seed:
//  - no switch away from a healthy live release (one whose probes never fail: a trigger on it
//    cannot have fired; the watcher's errors are not failures);
//  - at most one action per breach (per time a broken release is live);
//  - every proposal ends in a terminal state;
//  - the ledger opens after every crash and verifies at the end.
// No sockets, no sleeps: a fake clock, a temp folder.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "policy/engine.hpp"
#include "watchdog/state/ledger.hpp"

using namespace lastgood::policy;
using namespace std::chrono_literals;
using lastgood::watchdog::Ledger;
using lastgood::watchdog::LedgerIo;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const TimePoint T0 = TimePoint{} + std::chrono::hours(24 * 365 * 50);

long long ms(TimePoint t) { return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count(); }
TimePoint from_ms(long long v) { return TimePoint{} + std::chrono::milliseconds(v); }

ServiceSpec spec(std::mt19937_64& rng) {
  ServiceSpec s;
  s.name = "www";
  s.probes = {{"home", false}};
  Trigger down;
  down.name = "down";
  down.severity = Severity::P0;
  down.rule.kind = "consecutive_failures";
  down.rule.count = 2 + static_cast<int>(rng() % 3);
  s.triggers = {down};
  s.rollback.mode = rng() % 2 ? "auto" : "approve";
  s.rollback.good_after = std::chrono::minutes(1 + rng() % 5);
  s.rollback.rollback_window = 6h;
  s.rollback.cooldown = std::chrono::minutes(1 + rng() % 10);
  s.rollback.max_per_day = 2 + static_cast<int>(rng() % 4);
  s.rollback.verify.healthy_samples = 1 + static_cast<int>(rng() % 3);
  s.authority = std::make_shared<const std::map<Severity, Authority>>(std::map<Severity, Authority>{{Severity::P0, Authority{{"oncall"}, 1, true}}});
  s.has_deployment = true;
  return s;
}

struct Proposal {
  std::string id, from, to, state = "pending";
  TimePoint created;
};

class Sim {
 public:
  explicit Sim(std::uint64_t seed) : rng_(seed), spec_(spec(rng_)) {
    dir_ = fs::temp_directory_path() / ("lastgood-sim-" + std::to_string(::getpid()) + "-" + std::to_string(seed));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    for (int i = 0; i < 5; ++i) broken_["r" + std::to_string(i)] = i > 0 && pick(5) < 2;
    live_ = "r0";
    open();
  }
  ~Sim() { fs::remove_all(dir_); }

  void run(int steps) {
    for (int step = 0; step < steps; ++step) {
      now_ += std::chrono::seconds(1 + pick(20));
      retry_ledger();
      const int what = pick(100);
      if (what < 4) deploy_by_person();
      else if (what < 7) disk_full_ = !disk_full_;
      else if (what < 9) restart();
      else if (what < 15) approve_one();
      else if (what < 16) clear();
      else sample();
      handle(policy_->tick(now_, true));
      expire();
    }
    // The end: the disk has room, time passes, and every proposal reaches a terminal state.
    disk_full_ = false;
    retry_ledger();
    now_ += 2h;
    handle(policy_->tick(now_, true));
    expire();
  }

  void check_end() const {
    for (const auto& p : proposals_) {
      INFO("proposal " << p.id << " " << p.from << " -> " << p.to);
      CHECK((p.state == "executed" || p.state == "expired" || p.state == "stale" || p.state == "escalated"));
    }
    const auto report = lastgood::watchdog::verify_ledger((dir_ / "ledger.jsonl").string());
    INFO(report.why << " at line " << report.bad_line);
    CHECK(report.ok);
  }

  int switches = 0, crashes = 0, failed_appends = 0, holds = 0, stale = 0, errors_seen = 0;

 private:
  int pick(int n) { return static_cast<int>(rng_() % static_cast<std::uint64_t>(n)); }

  // ---- the ledger, with a disk that fills ----
  void open() {
    ledger_ = std::make_unique<Ledger>(dir_.string());  // throws if a crash left it damaged
    ledger_->set_io(LedgerIo{[this](int fd, const void* b, size_t n) -> ssize_t {
                               if (disk_full_) {
                                 if (n > 1 && pick(2)) return ::write(fd, b, n / 2);  // a short write, then ENOSPC
                                 errno = ENOSPC;
                                 return -1;
                               }
                               return ::write(fd, b, n);
                             },
                             [this](int fd) {
                               if (disk_full_ && pick(3) == 0) {
                                 errno = EIO;
                                 return -1;
                               }
                               return ::fdatasync(fd);
                             }});
    policy_ = std::make_unique<ServicePolicy>(spec_);
    writable_ = true;
    replay(ledger_->take_loaded());
  }

  bool record(const std::string& type, json data) {
    if (std::getenv("SIM_TRACE")) std::fprintf(stderr, "%s %s %s\n", writable_ ? "+" : "-", type.c_str(), data.dump().c_str());
    if (!writable_) return false;
    auto r = ledger_->try_append(type, "www", std::move(data), ms(now_));
    if (!r) {
      ++failed_appends;
      writable_ = false;
      policy_->set_can_record(false);
    }
    return static_cast<bool>(r);
  }

  // As Pipeline::retry_ledger and resume_after_outage: once the ledger takes entries again, a
  // breach that is still firing is decided again on the evidence of now.
  void retry_ledger() {
    if (writable_ || disk_full_) return;
    writable_ = true;
    policy_->set_can_record(true);
    for (size_t ti = 0; ti < spec_.triggers.size(); ++ti)
      if (policy_->trigger_firing(ti)) decide(ti);
  }

  // ---- replay after a crash, as Pipeline::replay and reconcile ----
  void replay(std::vector<lastgood::watchdog::LedgerEntry> entries) {
    std::map<std::string, json> open;
    proposals_.clear();
    for (const auto& e : entries) {
      const auto at = from_ms(e.ts_ms);
      if (e.type == "release_observed") policy_->on_release(e.data["release"], std::nullopt, at);
      else if (e.type == "release_verified_good") policy_->replay_verified(e.data["release"], at);
      else if (e.type == "decision" && e.data["kind"] != "execute")
        policy_->replay_decision(e.data["kind"] == "hold" ? DecisionKind::hold : DecisionKind::propose, at);
      else if (e.type == "action_started") {
        policy_->note_rollback(at);
        open[e.data["action_id"]] = e.data;
      } else if (e.type == "action_finished" || e.type == "action_reconciled") open.erase(e.data["action_id"].get<std::string>());
      else if (e.type == "escalated") escalated_ = true;
      else if (e.type == "cleared") escalated_ = false;
      else if (e.type == "proposal_created") proposals_.push_back({e.data["id"], e.data["from"], e.data["to"], "pending", at});
      else if (e.type == "proposal_state")
        for (auto& p : proposals_)
          if (p.id == e.data["id"]) p.state = e.data["state"];
    }
    replaying_ = true;  // (no crash is drawn while a restart is under way)
    std::set<std::string> started;
    for (const auto& e : entries)
      if (e.type == "action_started") started.insert(e.data["via"].get<std::string>());
    // An action started and never finished: reconciled against the live release, never re-run.
    for (const auto& [id, data] : open) {
      const bool switched = live_ == data["to"];
      record("action_reconciled", {{"action_id", id}, {"switched", switched}, {"live", live_}});
      if (!switched && record("escalated", {{"reason", "interrupted"}})) escalated_ = true;
      for (auto& p : proposals_)
        if ("proposal " + p.id == data["via"]) set_state(p, switched ? "executed" : "escalated");
    }
    for (auto& p : proposals_)  // finished but its state not recorded (the disk was full)
      if ((p.state == "approved" || p.state == "executing") && started.count("proposal " + p.id) && !open.count(p.id)) set_state(p, "executed");
    observe();
    // Proposals approved (or executing) whose action never started are checked again.
    for (size_t i = 0; i < proposals_.size(); ++i)
      if ((proposals_[i].state == "approved" || proposals_[i].state == "executing") && !started.count("proposal " + proposals_[i].id))
        act(proposals_[i].from, proposals_[i].to, "proposal " + proposals_[i].id, &proposals_[i]);
    replaying_ = false;
  }

  void restart() {
    if (std::getenv("SIM_TRACE")) std::fprintf(stderr, "RESTART\n");
    ++crashes;
    policy_.reset();
    ledger_.reset();
    open();
  }

  // ---- the world ----
  void observe() {
    const Release* l = policy_->deployment().live();
    if (l && l->id == live_) return;
    record("release_observed", {{"release", live_}});
    handle(policy_->on_release(live_, std::nullopt, now_));
    // Pending proposals whose `from` is no longer live are stale (Pipeline::mark_stale).
    for (auto& p : proposals_)
      if (p.state == "pending" && p.from != live_) set_state(p, "stale");
  }

  void deploy_by_person() {
    live_ = "r" + std::to_string(pick(5));
    ++episode_;
    observe();
  }

  void sample() {
    SampleOutcome o = broken_[live_] ? SampleOutcome::fail : SampleOutcome::ok;
    if (pick(8) == 0) {  // the watcher's own trouble: out of descriptors, its resolver, its deadline
      o = SampleOutcome::error;
      ++errors_seen;
    }
    observe();
    handle(policy_->on_sample(0, Sample{now_, o, 10, 0}, true));
  }

  void handle(const Events& ev) {
    for (const auto& t : ev.transitions) {
      record("transition", {{"trigger", t.trigger}, {"to", to_string(t.to)}});
      if (t.to == TriggerState::firing)
        if (auto ti = policy_->trigger_index(t.trigger)) decide(*ti);
    }
    for (const auto& id : ev.verified_good) record("release_verified_good", {{"release", id}});
  }

  void decide(size_t ti) {
    observe();  // a deploy seconds before the breach is seen
    if (!policy_->trigger_firing(ti)) return;
    if (!writable_) {
      ++holds;  // "hold: cannot record": decided again when the ledger takes entries
      return;
    }
    Decision d = policy_->decide(ti, now_);
    if (escalated_ && (d.kind == DecisionKind::execute || d.kind == DecisionKind::propose)) d.kind = DecisionKind::hold;  // until a person clears it
    for (const auto& p : proposals_)  // one proposal per breach (Pipeline::handle_decision)
      if ((d.kind == DecisionKind::execute || d.kind == DecisionKind::propose) && p.from == d.release_from &&
          (p.state == "pending" || p.state == "approved" || p.state == "executing"))
        d.kind = DecisionKind::hold;
    if (!record("decision", {{"kind", to_string(d.kind)}, {"from", d.release_from.value_or("")}, {"to", d.release_to.value_or("")}})) return;
    if (d.kind == DecisionKind::execute) act(*d.release_from, *d.release_to, "policy", nullptr);
    if (d.kind == DecisionKind::propose) {
      Proposal p{"p" + std::to_string(next_id_++), *d.release_from, *d.release_to, "pending", now_};
      if (record("proposal_created", {{"id", p.id}, {"from", p.from}, {"to", p.to}})) proposals_.push_back(p);
    }
  }

  void set_state(Proposal& p, const std::string& state) {
    if (record("proposal_state", {{"id", p.id}, {"state", state}})) {
      p.state = state;
      if (state == "stale") ++stale;
    }
  }

  void approve_one() {
    if (escalated_) return;  // 409: the service is escalated, a person clears it first
    for (auto& p : proposals_) {
      if (p.state != "pending") continue;
      observe();
      if (p.state != "pending") return;  // just became stale: the approval answers 409
      set_state(p, "approved");
      if (p.state == "approved") act(p.from, p.to, "proposal " + p.id, &p);
      return;
    }
  }

  // A person clears an escalation (POST .../clear): what follows is a new breach of their choosing.
  void clear() {
    if (escalated_ && record("cleared", json::object())) {
      escalated_ = false;
      ++episode_;
    }
  }

  void expire() {
    for (auto& p : proposals_)
      if (p.state == "pending" && now_ - p.created > 30min) set_state(p, "expired");
  }

  // Pipeline::run_action and the kind's own compare-before-switch.
  void act(const std::string& from, const std::string& to, const std::string& via, Proposal* p) {
    if (live_ != from) {
      record("action_refused", {{"from", from}, {"live", live_}});
      if (p) set_state(*p, "stale");
      return;
    }
    const std::string id = "a" + std::to_string(next_id_++);
    if (!record("action_started", {{"action_id", id}, {"from", from}, {"to", to}, {"via", via}})) return;  // not recorded, not done
    policy_->note_rollback(now_);
    // The invariants: a trigger on the live release fired, so it is a broken one; one action per breach.
    INFO("switch " << from << " -> " << to << " via " << via);
    REQUIRE(broken_[from]);
    REQUIRE(++actions_in_episode_[episode_] == 1);
    if (!replaying_ && pick(10) == 0) {  // stopped dead between action_started and the switch
      if (p) p->state = "executing";
      restart();
      return;
    }
    live_ = to;
    ++switches;
    ++episode_;
    const bool fin = record("action_finished", {{"action_id", id}, {"ok", true}});
    if (p) set_state(*p, "executed");
    if (!fin && p && p->state != "executed") p->state = "executed";  // the switch is done; the restart reconciles
    observe();
  }

  std::mt19937_64 rng_;
  ServiceSpec spec_;
  fs::path dir_;
  std::unique_ptr<Ledger> ledger_;
  std::unique_ptr<ServicePolicy> policy_;
  std::map<std::string, bool> broken_;
  std::string live_;
  std::vector<Proposal> proposals_;
  std::map<int, int> actions_in_episode_;
  int episode_ = 0, next_id_ = 0;
  bool disk_full_ = false, writable_ = true, replaying_ = false, escalated_ = false;
  TimePoint now_ = T0;
};

}  // namespace

TEST_CASE("randomized faults: deploys, watcher errors, a full disk, crashes and approvals never make lastgood act wrongly", "[policy][random][faults]") {
  int switches = 0, crashes = 0, failed_appends = 0, holds = 0, stale = 0, errors = 0;
  for (std::uint64_t seed = std::getenv("SIM_SEED") ? std::strtoull(std::getenv("SIM_SEED"), nullptr, 10) : 1; seed <= 300; ++seed) {
    INFO("seed " << seed);
    Sim sim(seed);
    sim.run(600);
    sim.check_end();
    switches += sim.switches;
    crashes += sim.crashes;
    failed_appends += sim.failed_appends;
    holds += sim.holds;
    stale += sim.stale;
    errors += sim.errors_seen;
  }
  // The timelines must reach every fault, or the invariants were checked on nothing.
  CHECK(switches > 100);
  CHECK(crashes > 100);
  CHECK(failed_appends > 100);
  CHECK(holds > 10);
  CHECK(stale > 10);
  CHECK(errors > 1000);
}
