#include "watchdog/pipeline/rollback.hpp"

#include "watchdog/log_fields.hpp"

#include <algorithm>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <spdlog/spdlog.h>

#include "net/supervise.hpp"
#include "watchdog/json_text.hpp"
#include "watchdog/state/ledger.hpp"

namespace lastgood::watchdog {

namespace asio = boost::asio;
using nlohmann::json;

std::vector<std::string> fired_of(const json& started) {
  std::vector<std::string> out;
  if (auto it = started.find("fired"); it != started.end() && it->is_array())
    for (const auto& t : *it)
      if (t.is_string()) out.push_back(t.get<std::string>());
  return out;
}

asio::awaitable<RunResult> Rollbacks::run(Service& s, policy::Decision d, std::string via) {
  RunResult r;
  const auto& name = s.name();
  if (!s.action || !d.release_to || !d.release_from) co_return r;
  actions::Context ctx{name, d.trigger, d.reason};
  {
    std::vector<const policy::Release*> good;
    for (const auto& rel : s.policy->deployment().history())
      if (rel.last_good_at && rel.id != *d.release_from && rel.id != *d.release_to && !s.policy->deployment().bad(rel.id)) good.push_back(&rel);
    std::sort(good.begin(), good.end(), [](const auto* a, const auto* b) { return *a->last_good_at > *b->last_good_at; });
    for (const auto* rel : good) ctx.fallbacks.push_back(rel->id);
  }
  r.plan = s.action->plan(*d.release_from, *d.release_to, ctx);
  const auto& plan = r.plan;
  json steps = plan.steps;
  if (dry_run_) {
    rec_.record(Event::action_planned, name, {{"trigger", d.trigger}, {"from", plan.from}, {"to", plan.to}, {"steps", steps}, {"dry_run", true}});
    spdlog::warn("dry run: would roll back {} {} -> {}: {}", name, plan.from, plan.to, json_text(steps));
    r.kind = RunResult::Kind::planned;
    co_return r;
  }
  if (s.acting) co_return r;       // one rollback of a service at a time
  net::FlagGuard acting(s.acting);  // cleared however this coroutine ends (a throw included)
  r.id = ids_.make('a', clock_.now());
  const auto& id = r.id;
  // The fields of this rollback's log lines (log_fields.hpp).
  const logf::Fields lf{.service = name, .trigger = d.trigger, .release = plan.to, .action_id = id,
                        .proposal_id = via.rfind("proposal ", 0) == 0 ? via.substr(9) : std::string()};
  // The live release must still be `from`: a person may have deployed since the decision.
  if (const auto* live = s.policy->deployment().live(); !live || live->id != plan.from) {
    const std::string found = live ? live->id : "unknown";
    rec_.record(Event::action_refused, name, {{"action_id", id}, {"from", plan.from}, {"to", plan.to}, {"live", found}, {"via", via},
                                             {"why", "the live release is no longer " + plan.from}});
    logf::warn(lf, "rollback of {} {} -> {} refused: the live release is now {}", name, plan.from, plan.to, found);
    r.kind = RunResult::Kind::refused;
    co_return r;
  }
  // A release a person marked bad since the decision is never a target.
  if (const auto* bad = s.policy->deployment().bad(plan.to)) {
    rec_.record(Event::action_refused, name, {{"action_id", id}, {"from", plan.from}, {"to", plan.to}, {"via", via},
                                             {"why", "the target " + plan.to + " was marked bad by " + bad->by}});
    logf::warn(lf, "rollback of {} {} -> {} refused: {} was marked bad by {}", name, plan.from, plan.to, plan.to, bad->by);
    r.kind = RunResult::Kind::refused;
    co_return r;
  }
  // A person's request is not held by the cooldown or the budget (they are limits on automation);
  // it still counts toward both.
  const bool person = d.origin != "policy";
  Intent intent{name, id, s.action->kind(), d.trigger, plan.from, plan.to, via,
                person ? std::chrono::milliseconds(0) : std::chrono::duration_cast<std::chrono::milliseconds>(s.cfg->rollback.cooldown)};
  intent.max_per_day = person ? 0 : s.cfg->rollback.max_per_day;
  Grant g = co_await coordinator_->begin(intent);
  if (!g.granted) {
    rec_.record(Event::action_refused, name, {{"action_id", id}, {"from", plan.from}, {"to", plan.to}, {"via", via}, {"why", g.why}});
    logf::warn(lf, "rollback of {} {} -> {} refused: {}", name, plan.from, plan.to, g.why);
    r.kind = RunResult::Kind::not_granted;
    r.retry = g.retry;
    co_return r;
  }
  if (g.etcd_rev != 0) test_crash_point("intent_committed");  // ha crash tests: in etcd, not in the ledger
  // The triggers that fired: verification waits for each to be back to ok (design.md).
  r.fired = s.policy->firing();
  if (s.policy->trigger_state(d.trigger) && std::find(r.fired.begin(), r.fired.end(), d.trigger) == r.fired.end()) r.fired.push_back(d.trigger);
  json started{{"action_id", id}, {"kind", s.action->kind()}, {"trigger", d.trigger}, {"from", plan.from}, {"to", plan.to}, {"steps", steps}, {"via", via},
               {"fired", r.fired}};
  if (g.fence != 0) {  // several replicas: the token the target may check (ha.md)
    started["replica"] = g.replica;
    started["fence"] = g.fence;
    started["etcd_rev"] = g.etcd_rev;
  }
  // Durable before anything changes. Not recorded, not done.
  if (!rec_.record(Event::action_started, name, started)) {
    logf::error(lf, "rollback of {} {} -> {} not started: it cannot be recorded ({})", name, plan.from, plan.to, rec_.error());
    const std::string why = "not started: action_started could not be recorded";  // (GCC 12: no temporaries in co_await)
    co_await coordinator_->finish(intent, g, /*ran=*/false, false, why);
    r.kind = RunResult::Kind::not_recorded;
    co_return r;
  }
  // With several replicas: the intent becomes running in etcd only now that action_started is
  // durable. Not marked, not run (the intent is closed as never started).
  std::string unmarked;
  const bool marked = co_await coordinator_->running(intent, g, &unmarked);
  if (!marked) {
    rec_.record(Event::action_finished, name, {{"action_id", id}, {"ok", false}, {"ran", false}, {"error", "not run: " + unmarked}, {"seconds", 0.0}});
    logf::error(lf, "rollback {} of {} {} -> {} not run: {}", id, name, plan.from, plan.to, unmarked);
    const std::string why = "not run: " + unmarked;
    co_await coordinator_->finish(intent, g, /*ran=*/false, false, why);
    r.kind = RunResult::Kind::not_granted;
    co_return r;
  }
  s.policy->note_rollback(clock_.now());  // cooldown and budget count from action_started
  logf::warn(lf, "rollback {}: {} {} -> {} ({}{})", id, name, plan.from, plan.to, s.action->kind(),
               g.fence ? ", fence " + std::to_string(g.fence) : std::string());
  const auto t0 = std::chrono::steady_clock::now();
  actions::Plan fenced = plan;
  fenced.fence = static_cast<std::int64_t>(g.fence);
  fenced.action_id = id;
  // Run under a cancellation signal of its own: cancel() (this replica lost the service) cancels
  // its I/O and kills its processes. A shutdown does not: a rollback under way is let finish.
  auto& running = running_[&s];
  running.signal = std::make_shared<asio::cancellation_signal>();
  running.why.clear();
  const auto signal = running.signal;
  // (GCC 12: no co_await inside another's arguments.)
  const auto ex = co_await asio::this_coro::executor;
  auto execution = s.action->execute(fenced);
  try {
    r.outcome = co_await asio::co_spawn(ex, std::move(execution), asio::bind_cancellation_slot(signal->slot(), asio::use_awaitable));
  } catch (const boost::system::system_error& e) {
    r.outcome = {};
    r.outcome.error = "cancelled: " + (running_[&s].why.empty() ? std::string(e.what()) : running_[&s].why);
  }
  const std::string lost_why = running_[&s].why;
  running_.erase(&s);
  const auto& out = r.outcome;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  test_crash_point("action_executed");  // crash-safety tests: the switch happened, action_finished did not
  json finished{{"action_id", id}, {"ok", out.ok}, {"output", out.output}, {"error", out.error}, {"seconds", r.seconds}};
  if (out.live_changed) finished["refused_live"] = *out.live_changed;
  if (out.switched_to) finished["switched_to"] = *out.switched_to;
  if (!lost_why.empty()) finished["lost"] = lost_why;
  rec_.record(Event::action_finished, name, finished);
  if (!lost_why.empty()) {
    // Not this replica's to finish: the new owner reconciles the action from etcd.
    metrics_.rollback(name, s.action->kind(), "lost", r.seconds);
    logf::error(lf, "rollback {} of {} cancelled: {}; the replica that owns the service now reconciles it", id, name, lost_why);
    r.kind = RunResult::Kind::lost;
    co_return r;
  }
  const std::string finish_error = out.live_changed ? "refused: live is " + *out.live_changed : out.error;
  co_await coordinator_->finish(intent, g, /*ran=*/true, out.ok && !out.live_changed, finish_error);
  if (out.live_changed) {
    // Nothing changed: not a failure, nothing to escalate; the new live release is judged on its own.
    metrics_.rollback(name, s.action->kind(), "refused", r.seconds);
    logf::warn(lf, "rollback {} of {} {} -> {} refused by {}: the live release is now {}; nothing was changed", id, name, plan.from, plan.to,
                 s.action->kind(), *out.live_changed);
    r.kind = RunResult::Kind::refused_by_kind;
    co_return r;
  }
  metrics_.rollback(name, s.action->kind(), out.ok ? "ok" : "failed", r.seconds);
  if (!out.ok) logf::error(lf, "rollback {} of {} failed: {}", id, name, out.error);
  else logf::warn(lf, "rollback {}: {} is now on {} ({:.1f} ms); verifying recovery", id, name, plan.to, r.seconds * 1000);
  r.kind = out.ok ? RunResult::Kind::done : RunResult::Kind::failed;
  co_return r;
}

std::optional<Verification> Rollbacks::reconciled(Service& s, const json& started) {
  const std::string id = started.value("action_id", "");
  const std::string target = started.value("to", "");
  const auto* live = s.policy->deployment().live();
  const std::string found = live ? live->id : "";
  const bool switched = !found.empty() && found == target;
  json rec{{"action_id", id}, {"to", target}, {"live", found}, {"switched", switched}, {"error", s.observe_error}, {"fired", fired_of(started)}};
  if (started.contains("reconciled_by")) {  // ha: another replica's action, taken over (its incident opens here)
    rec["reconciled_by"] = started["reconciled_by"];
    rec["inherited"] = started;
    rec["inherited"].erase("reconciled_by");
  }
  rec_.record(Event::action_reconciled, s.name(), rec);
  if (!switched) {
    escalate(s, "rollback " + id + " to " + target + " was interrupted and the live release is " + (found.empty() ? "unknown" : found), id);
    return std::nullopt;
  }
  logf::info({.service = s.name(), .release = target, .action_id = id}, "service {}: the interrupted rollback had switched to {}; verifying recovery", s.name(), target);
  const auto& verify = s.cfg->rollback.verify;
  return Verification{id, target, "", clock_.now() + verify.within, verify.healthy_samples, 0, fired_of(started)};
}

void Rollbacks::escalate(Service& s, const std::string& why, const std::string& action_id) {
  s.escalated = true;
  s.escalation = why;
  metrics_.escalation(s.name());
  json d{{"reason", why}};
  if (!action_id.empty()) d["action_id"] = action_id;
  rec_.record(Event::escalated, s.name(), d);
  coordinator_->escalated(s.name(), why, action_id);
  notify_("escalated", s.name(), {{"reason", why}, {"incident_id", action_id}});
  logf::error({.service = s.name(), .action_id = action_id}, "service {} ESCALATED: {}; no automatic action until a person clears it (POST /api/v1/services/{}/clear)",
              s.name(), why, s.name());
}

bool Rollbacks::cancel(const Service& s, const std::string& why) {
  auto it = running_.find(&s);
  if (it == running_.end() || !it->second.signal) return false;
  it->second.why = why;
  it->second.signal->emit(asio::cancellation_type::terminal);
  return true;
}

bool Rollbacks::clear(Service& s, const std::string& who, const std::string& source) {
  if (!s.escalated) return false;
  rec_.record(Event::cleared, s.name(), {{"by", who}, {"source", source}, {"was", s.escalation}});
  logf::info({.service = s.name()}, "service {}: escalation cleared by {}", s.name(), who);
  s.escalated = false;
  s.escalation.clear();
  return true;
}

}  // namespace lastgood::watchdog
