#include "watchdog/ha/node.hpp"

#include <algorithm>
#include <charconv>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "net/tls.hpp"
#include "watchdog/api/views.hpp"
#include "watchdog/pipeline/clock.hpp"
#include "watchdog/state/records.hpp"
#include "watchdog/ha/placement.hpp"
#include "watchdog/api/views.hpp"
#include "watchdog/pipeline/pipeline.hpp"

namespace lastgood::watchdog::ha {

namespace asio = boost::asio;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::shared_ptr<asio::ssl::context> etcd_tls(const config::Ha& h) {
  const bool https = std::any_of(h.etcd.begin(), h.etcd.end(), [](const std::string& e) { return e.rfind("https://", 0) == 0; });
  if (!https) return nullptr;
  auto ctx = net::make_tls_context(net::TlsOptions{h.ca_file, false});
  try {
    if (h.cert_file) ctx->use_certificate_chain_file(*h.cert_file);
    if (h.key_file) ctx->use_private_key_file(*h.key_file, asio::ssl::context::pem);
  } catch (const std::exception& e) {
    throw std::runtime_error("ha.tls: cannot load the client certificate or key: " + std::string(e.what()));
  }
  return ctx;
}

}  // namespace

Node::Node(asio::io_context& ioc, const config::Config& config, Pipeline& pipeline, Metrics& metrics)
    : ioc_(ioc), config_(&config), cfg_(*config.ha), pipeline_(pipeline), metrics_(metrics) {
  EtcdOptions eo;
  if (cfg_.user) {
    eo.user = *cfg_.user;
    // Read at each authentication: a rotated password file is picked up without a restart.
    eo.password = [secret = cfg_.password]() mutable -> std::optional<std::string> {
      if (!secret) return std::nullopt;
      if (secret->resolve()) return std::nullopt;
      return secret->value();
    };
  }
  eo.endpoints = cfg_.etcd;
  // A call must fit well inside the renew deadline, so that a keepalive can be retried in time.
  eo.call_timeout = std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.renew_deadline) / 3,
                               std::chrono::milliseconds(300), std::chrono::milliseconds(2'000));
  eo.tls = etcd_tls(cfg_);
  eo.on_request = [this](const std::string& op, const char* outcome) { metrics_.ha_etcd_request(op, outcome); };
  etcd_ = std::make_unique<EtcdClient>(ioc_.get_executor(), std::move(eo));
  metrics_.enable_ha(cfg_.shards);
}

Node::~Node() { stop(); }

void Node::start(const std::string& address) {
  ReplicaOptions ro;
  ro.cluster = cfg_.cluster;
  ro.replica = cfg_.replica;
  ro.address = address;
  ro.shards = cfg_.shards;
  ro.lease = std::chrono::duration_cast<std::chrono::seconds>(cfg_.lease);
  ro.renew_deadline = std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.renew_deadline);
  ro.retry = std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.retry);
  ro.busy = [this](int shard) {
    if (taking_over_.count(shard)) return true;
    for (size_t si = 0; si < pipeline_.services(); ++si)
      if (pipeline_.acting(si) && shard_of(pipeline_.service_name(si), cfg_.shards) == shard) return true;
    return false;
  };
  ro.healthy = [this] { return pipeline_.ledger_writable(); };
  replica_ = std::make_unique<Replica>(ioc_.get_executor(), *etcd_, ro,
                                       [this](int shard, std::int64_t fence, const std::string& why) { on_change(shard, fence, why); });
  coordinator_ = std::make_unique<HaCoordinator>(
      cfg_.cluster, cfg_.replica, cfg_.shards, [this](int shard) { return replica_->fence(shard); }, [this] { return replica_->lease(); },
      etcd_.get());
  pipeline_.set_coordinator(*coordinator_);
  pipeline_.set_replica(cfg_.replica);
  pipeline_.on_proposal_change([this](const Proposal& p) { mirror(p); });
  coordinator_->on_escalated = [this](const std::string& service, const std::string& why, const std::string& id) {
    share_escalation(service, why, id);
  };
  replica_->start();
  net::spawn(ioc_.get_executor(), [this] { return count_votes(); }, "ha", life_, net::Restart::yes);
  net::spawn(ioc_.get_executor(), [this] { return prune(); }, "ha", life_, net::Restart::yes);
  started_ = true;
  spdlog::info("ha: replica {} of cluster {} joining ({} etcd endpoint(s), {} shard(s), lease {}s)", cfg_.replica, cfg_.cluster, cfg_.etcd.size(),
               cfg_.shards, ro.lease.count());
}

void Node::on_change(int shard, std::int64_t fence, const std::string& why) {
  metrics_.ha_owner(shard, fence > 0);
  if (fence > 0) {
    metrics_.ha_transition("acquired");
    pipeline_.record(Event::ha_acquired, "", {{"shard", shard}, {"fence", fence}, {"replica", cfg_.replica}});
    net::spawn(ioc_.get_executor(), [this, shard, fence] { return take_over(shard, fence); }, "ha", life_);
    return;
  }
  metrics_.ha_transition(why == "resigned" ? "resigned" : why.find("deadline") != std::string::npos ? "cut_off" : "lost");
  pipeline_.record(Event::ha_lost, "", {{"shard", shard}, {"why", why}, {"replica", cfg_.replica}});
  const int shards = cfg_.shards;
  pipeline_.lost([shard, shards](const std::string& service) { return shard_of(service, shards) == shard; },
                 "replica " + cfg_.replica + " lost shard " + std::to_string(shard) + ": " + why);
}

asio::awaitable<void> Node::take_over(int shard, std::int64_t fence) {
  struct Mark {
    std::multiset<int>& set;
    std::multiset<int>::iterator it;
    ~Mark() { set.erase(it); }
  } mark{taking_over_, taking_over_.insert(shard)};
  asio::steady_timer timer(ioc_);
  // One read for all the services (requests must not grow with their number), then the record
  // of each active action.
  std::string error;
  const auto active = co_await coordinator_->active_actions(&error);
  if (!active) spdlog::warn("ha: shard {}: the active actions of its services could not be read from etcd ({}); checked again at the next take-over", shard, error);
  struct Left {
    size_t si;
    HaCoordinator::Inherited action;
  };
  std::vector<Left> running;  // actions that may still be under way on the target
  std::vector<size_t> mine;   // the shard's services
  std::chrono::milliseconds wait{0};
  for (size_t si = 0; si < pipeline_.services(); ++si) {
    const std::string& name = pipeline_.service_name(si);
    if (shard_of(name, cfg_.shards) != shard || pipeline_.retired(si)) continue;
    mine.push_back(si);
    if (!active || !active->count(name)) continue;
    auto inherited = co_await coordinator_->inherited(name, &error);
    if (!inherited) continue;
    if (replica_->fence(shard) != fence) co_return;  // lost meanwhile: the next owner does it
    if (inherited->record.value("state", std::string()) == "intent") {
      // Committed, never marked running: its owner stopped before action_started was durable,
      // so the target was never touched. Closed as never run; it costs no cooldown, and the
      // breach is decided again below.
      json outcome = inherited->record;
      outcome["state"] = "never_ran";
      outcome["reconciled_by"] = cfg_.replica;
      const bool closed = co_await coordinator_->close_never_ran(name, *inherited, outcome);
      pipeline_.record(Event::action_reconciled, name,
                       {{"action_id", inherited->action_id}, {"to", inherited->record.value("to", std::string())}, {"switched", false},
                        {"never_ran", true}, {"replica", inherited->record.value("replica", std::string("?"))}, {"closed", closed}});
      spdlog::warn("ha: service {}: action {} of replica {} was committed in etcd but never started (its owner stopped first): closed, not "
                   "escalated",
                   name, inherited->action_id, inherited->record.value("replica", std::string("?")));
      continue;
    }
    // Its owner may still be in the middle of it (frozen, or its last request in flight).
    wait = std::max(wait, pipeline_.step_timeout(si) + 2s);
    spdlog::warn("ha: service {}: action {} of replica {} was left unfinished; reconciling it once no step of it can still run "
                 "(observed, never re-run)",
                 name, inherited->action_id, inherited->record.value("replica", std::string("?")));
    running.push_back({si, std::move(*inherited)});
  }
  // One wait for all of them, as long as the longest step of their kinds, then look at the
  // targets.
  if (!running.empty()) {
    timer.expires_after(wait);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  for (auto& [si, inherited] : running) {
    if (replica_->fence(shard) != fence) co_return;
    const std::string& name = pipeline_.service_name(si);
    json adopted = inherited.record;
    adopted["reconciled_by"] = cfg_.replica;  // its incident record opens in this replica's ledger
    co_await pipeline_.adopt(si, adopted);
    const auto live = pipeline_.live_release(si);
    const bool switched = live && *live == inherited.record.value("to", std::string());
    json outcome = inherited.record;
    outcome["state"] = "reconciled";
    outcome["switched"] = switched;
    outcome["live"] = live.value_or("unknown");
    outcome["reconciled_by"] = cfg_.replica;
    const bool closed = co_await coordinator_->close_inherited(name, inherited, outcome);
    if (!closed) spdlog::warn("ha: service {}: action {} could not be closed in etcd (changed meanwhile, or etcd away)", name, inherited.action_id);
    // Not done when looked at: a frozen owner of a kind the target cannot fence (npm, Firebase)
    // may still land it. Watched for two leases; if it lands, recorded and escalated.
    if (!switched) net::spawn(ioc_.get_executor(), [this, si = si, record = inherited.record] { return watch_late_effect(si, record); }, "ha", life_);
  }
  co_await adopt_escalations(shard, fence);
  for (size_t si : mine) {
    if (replica_->fence(shard) != fence) co_return;
    pipeline_.decide_again(si);
  }
  co_await adopt_proposals(shard, fence);
}

asio::awaitable<void> Node::watch_late_effect(size_t si, json record) {
  const std::string to = record.value("to", std::string());
  const std::string id = record.value("action_id", std::string());
  const auto before = pipeline_.live_release(si);
  asio::steady_timer timer(ioc_);
  const auto until = std::chrono::steady_clock::now() + 2 * cfg_.lease;
  while (std::chrono::steady_clock::now() < until) {
    timer.expires_after(250ms);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    const auto live = pipeline_.live_release(si);
    if (!live || live == before || *live != to) continue;
    const std::string& name = pipeline_.service_name(si);
    pipeline_.record(Event::late_effect, name,
                     {{"action_id", id}, {"to", to}, {"live", *live}, {"replica", record.value("replica", std::string("?"))},
                      {"fence", record.value("epoch", std::int64_t{0})}});
    spdlog::error("ha: service {}: action {} of replica {}, reconciled as not done, took effect late (live is now {})", name, id,
                  record.value("replica", std::string("?")), *live);
    pipeline_.escalate(si, "action " + id + " of replica " + record.value("replica", std::string("?")) +
                               " took effect after it was reconciled as not done (a late write of a frozen owner): live is now " + *live, id);
    co_return;
  }
}

bool Node::owns_service(const std::string& service) const { return replica_ && replica_->owns(shard_of(service, cfg_.shards)); }

void Node::mirror(const Proposal& p) {
  if (!coordinator_) return;
  const int shard = shard_of(p.decision.service, cfg_.shards);
  const auto fence = replica_->fence(shard);
  if (!fence) return;  // not the owner: not this replica's to write
  json j = p.to_json();
  j["service"] = p.decision.service;
  j["owner"] = cfg_.replica;
  mirror_queue_.push_back({coordinator_->keys().proposal(p.id), j.dump(), shard, *fence, ""});
  if (!flushing_) net::spawn(ioc_.get_executor(), [this] { return flush_mirror(); }, "ha", life_);
}

void Node::share_escalation(const std::string& service, const std::string& why, const std::string& action_id) {
  if (!coordinator_) return;
  const int shard = shard_of(service, cfg_.shards);
  const auto fence = replica_->fence(shard);
  if (!fence) return;  // a standby's escalation (a restart's reconciliation) stays its own
  const json v{{"why", why.substr(0, 1000)}, {"action_id", action_id}, {"replica", cfg_.replica},
               {"at_ms", std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count()}};
  mirror_queue_.push_back({coordinator_->keys().escalation(service), v.dump(), shard, *fence, service});
  if (!flushing_) net::spawn(ioc_.get_executor(), [this] { return flush_mirror(); }, "ha", life_);
}

asio::awaitable<void> Node::sync_escalations() {
  bool any = false;
  for (const auto& service : escalations_shared_)
    if (auto si = pipeline_.service_index(service); si && pipeline_.escalated(*si) && owns_service(service)) any = true;
  if (!any) co_return;
  const std::string prefix = coordinator_->keys().escalations();
  auto read = co_await etcd_->range(prefix, true);
  if (std::holds_alternative<EtcdError>(read)) co_return;
  std::set<std::string> present;
  for (const auto& kv : std::get<RangeResult>(read).kvs) present.insert(kv.key.substr(prefix.size()));
  const std::vector<std::string> known(escalations_shared_.begin(), escalations_shared_.end());
  for (const auto& service : known) {
    if (present.count(service)) continue;
    escalations_shared_.erase(service);
    const auto si = pipeline_.service_index(service);
    if (!si || !pipeline_.escalated(*si)) continue;
    const std::string key = coordinator_->keys().cleared(service);
    auto who = co_await etcd_->range(key);
    json c;
    if (auto* rr = std::get_if<RangeResult>(&who); rr && !rr->kvs.empty()) c = json::parse(rr->kvs[0].value, nullptr, false);
    if (!c.is_object()) c = json::object();
    pipeline_.clear(*si, c.value("by", std::string("a person")), "etcd (cleared through replica " + c.value("via", std::string("?")) + ")");
  }
}

asio::awaitable<void> Node::prune() {
  asio::steady_timer timer(ioc_);
  const auto every = std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.retention) / 2, std::chrono::milliseconds(1'000),
                                std::chrono::milliseconds(600'000));
  const Keys& keys = coordinator_->keys();
  const std::string actions = keys.prefix() + "actions/", proposals = keys.prefix() + "proposals/";
  for (;;) {
    timer.expires_after(every);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    const std::int64_t cutoff =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch() - cfg_.retention).count();
    int pruned = 0;
    auto a = co_await etcd_->range(actions, true);
    if (auto* r = std::get_if<RangeResult>(&a))
      for (const auto& kv : r->kvs) {
        const json j = json::parse(kv.value, nullptr, false);
        if (!j.is_object() || !owns_service(j.value("service", std::string()))) continue;
        const std::string state = j.value("state", std::string());
        if (state != "done" && state != "failed" && state != "reconciled" && state != "never_ran") continue;  // still open: kept
        if (j.value("at_ms", std::int64_t{0}) >= cutoff) continue;
        Txn t;
        t.compare.push_back({kv.key, Compare::Target::mod, Compare::Result::equal, kv.mod_revision, ""});
        t.success.push_back(Op::del(kv.key));
        auto d = co_await etcd_->txn(t);
        if (auto* done = std::get_if<TxnResult>(&d); done && done->succeeded) ++pruned;
      }
    auto p = co_await etcd_->range(proposals, true);
    if (auto* r = std::get_if<RangeResult>(&p))
      for (const auto& kv : r->kvs) {
        const json j = json::parse(kv.value, nullptr, false);
        if (!j.is_object() || !owns_service(j.value("service", std::string()))) continue;
        const std::string state = j.value("state", std::string()), id = j.value("id", std::string());
        if (id.empty() || state == "pending" || state == "approved" || state == "executing") continue;
        if (std::max(j.value("created_at", std::int64_t{0}), j.value("expires_at", std::int64_t{0})) >= cutoff) continue;
        Txn t;
        t.compare.push_back({kv.key, Compare::Target::mod, Compare::Result::equal, kv.mod_revision, ""});
        t.success.push_back(Op::del(kv.key));
        t.success.push_back(Op::del(keys.votes(id), /*prefix=*/true));
        auto d = co_await etcd_->txn(t);
        if (auto* done = std::get_if<TxnResult>(&d); done && done->succeeded) ++pruned;
      }
    if (pruned > 0) spdlog::info("ha: {} finished actions and closed proposals older than the retention left etcd", pruned);
  }
}

asio::awaitable<void> Node::adopt_escalations(int shard, std::int64_t fence) {
  const std::string prefix = coordinator_->keys().escalations();
  auto read = co_await etcd_->range(prefix, true);
  if (auto* e = std::get_if<EtcdError>(&read)) {
    spdlog::warn("ha: the escalations of shard {} could not be read from etcd ({}); the fenced intent still refuses to act on them", shard, e->message);
    co_return;
  }
  if (replica_->fence(shard) != fence) co_return;
  for (const auto& kv : std::get<RangeResult>(read).kvs) {
    const std::string service = kv.key.substr(prefix.size());
    if (shard_of(service, cfg_.shards) != shard) continue;
    const auto si = pipeline_.service_index(service);
    if (!si) continue;
    json e = json::parse(kv.value, nullptr, false);
    if (!e.is_object()) e = json::object();
    pipeline_.adopt_escalation(*si, e.value("why", std::string("escalated by another replica")), e.value("action_id", std::string()),
                               e.value("replica", std::string("?")));
    escalations_shared_.insert(service);
  }
}

asio::awaitable<HttpRes> Node::clear(std::string service, std::string who, std::string client) {
  const auto si = pipeline_.service_index(service);
  if (!si) co_return HttpRes::json_error(404, "no service named " + service);
  if (!coordinator_) co_return HttpRes::json_error(503, "this replica has not joined the cluster yet; try again");
  const Keys& keys = coordinator_->keys();
  Txn t;
  t.compare.push_back({keys.escalation(service), Compare::Target::create, Compare::Result::greater, 0, ""});
  t.success.push_back(Op::del(keys.escalation(service)));
  const json c{{"by", who}, {"via", cfg_.replica}, {"source", client},
               {"at_ms", std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count()}};
  t.success.push_back(Op::put(keys.cleared(service), c.dump()));
  auto r = co_await etcd_->txn(t);
  if (auto* e = std::get_if<EtcdError>(&r))
    co_return HttpRes::json_error(e->unavailable ? 503 : 502, "etcd cannot take the clear now (" + e->message + "): nothing cleared; try again");
  const bool in_etcd = std::get<TxnResult>(r).succeeded;
  escalations_shared_.erase(service);
  const bool here = pipeline_.clear(*si, who, client);
  if (!in_etcd && !here) co_return HttpRes::json_error(409, "service " + service + " is not escalated");
  co_return HttpRes{200, "application/json",
                    json{{"service", service}, {"cleared_by", who}, {"via", cfg_.replica},
                         {"note", "cleared in etcd; the replica that owns the service clears it within half a second"}}
                        .dump()};
}

asio::awaitable<void> Node::sync_shared() {
  if (!coordinator_) co_return;
  const Keys& keys = coordinator_->keys();
  const std::string sp = keys.silences(), bp = keys.bad();
  auto silences = co_await etcd_->range(sp, true);
  if (auto* rr = std::get_if<RangeResult>(&silences)) {
    std::vector<Silence> shared;
    for (const auto& kv : rr->kvs)
      if (auto s = Silence::from_record(json::parse(kv.value, nullptr, false))) shared.push_back(std::move(*s));
    pipeline_.set_shared_silences(std::move(shared));
  }
  auto bad = co_await etcd_->range(bp, true);
  if (auto* rr = std::get_if<RangeResult>(&bad)) {
    for (const auto& kv : rr->kvs) {
      const std::string rest = kv.key.substr(bp.size());  // <service>/<release>
      const auto slash = rest.find('/');
      if (slash == std::string::npos) continue;
      const auto si = pipeline_.service_index(rest.substr(0, slash));
      const json v = json::parse(kv.value, nullptr, false);
      if (!si || !v.is_object()) continue;
      const policy::BadMark mark{v.value("by", std::string()), v.value("reason", std::string()),
                                 policy::TimePoint(std::chrono::milliseconds(v.value("at_ms", std::int64_t{0})))};
      pipeline_.shared_bad(*si, rest.substr(slash + 1), mark, "etcd (marked through replica " + v.value("via", std::string("?")) + ")");
    }
  }
}

asio::awaitable<HttpRes> Node::add_silence(Silence s) {
  if (!coordinator_) co_return HttpRes::json_error(503, "this replica has not joined the cluster yet: no silence is made; try again");
  Txn t;
  t.success.push_back(Op::put(coordinator_->keys().silence(s.id), s.to_record().dump()));
  auto r = co_await etcd_->txn(t);
  if (auto* e = std::get_if<EtcdError>(&r))
    co_return HttpRes::json_error(e->unavailable ? 503 : 502, "etcd cannot take the silence now (" + e->message + "): no silence is made; try again");
  const auto [status, body] = request_response(pipeline_.add_silence(std::move(s)), 201);
  co_return HttpRes{status, "application/json", body.dump()};
}

asio::awaitable<HttpRes> Node::expire_silence(std::string id, std::string who, std::string client) {
  if (!coordinator_) co_return HttpRes::json_error(503, "this replica has not joined the cluster yet; try again");
  const std::string key = coordinator_->keys().silence(id);
  auto read = co_await etcd_->range(key);
  if (auto* e = std::get_if<EtcdError>(&read)) co_return HttpRes::json_error(503, "etcd cannot be read now (" + e->message + "); try again");
  const auto& kvs = std::get<RangeResult>(read).kvs;
  if (!kvs.empty()) {
    auto s = Silence::from_record(json::parse(kvs[0].value, nullptr, false));
    const auto now = std::chrono::system_clock::now();
    if (s && !s->expired_at && now < s->ends_at) {
      s->expired_at = now;
      s->expired_by = who;
      Txn t;  // only the silence as read: two people ending it at once end it once
      t.compare.push_back({key, Compare::Target::mod, Compare::Result::equal, kvs[0].mod_revision, ""});
      t.success.push_back(Op::put(key, s->to_record().dump()));
      auto w = co_await etcd_->txn(t);
      if (auto* e = std::get_if<EtcdError>(&w)) co_return HttpRes::json_error(503, "etcd cannot take it now (" + e->message + "): the silence goes on; try again");
      if (!std::get<TxnResult>(w).succeeded) co_return HttpRes::json_error(409, "silence " + id + " changed meanwhile; look again");
    }
  }
  const auto [status, body] = request_response(pipeline_.expire_silence(id, who, client), 200);
  co_return HttpRes{status, "application/json", body.dump()};
}

asio::awaitable<HttpRes> Node::mark_bad(size_t si, const config::Approver* who, std::string release, policy::Severity severity, std::string reason,
                                        std::string client) {
  if (!coordinator_) co_return HttpRes::json_error(503, "this replica has not joined the cluster yet; try again");
  const std::string service = pipeline_.service_name(si);
  const json v{{"by", who->name}, {"reason", reason.substr(0, 500)}, {"via", cfg_.replica},
               {"at_ms", std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count()}};
  Txn t;  // the first mark stays (who marked it, why)
  const std::string key = coordinator_->keys().bad_mark(service, release);
  t.compare.push_back({key, Compare::Target::create, Compare::Result::equal, 0, ""});
  t.success.push_back(Op::put(key, v.dump()));
  auto r = co_await etcd_->txn(t);
  if (auto* e = std::get_if<EtcdError>(&r))
    co_return HttpRes::json_error(e->unavailable ? 503 : 502, "etcd cannot take the mark now (" + e->message + "): nothing is marked; try again");
  const auto [status, body] = request_response(pipeline_.mark_bad(si, *who, release, severity, reason, client, owns_service(service)), 200);
  co_return HttpRes{status, "application/json", body.dump()};
}

// Written in order, by one writer, each only while this replica still owns the shard under the
// fence it had when the proposal changed (a frozen old owner's late write does not land).
asio::awaitable<void> Node::flush_mirror() {
  if (flushing_) co_return;
  net::FlagGuard flushing(flushing_);
  asio::steady_timer timer(ioc_);
  while (!mirror_queue_.empty()) {
    const Mirrored& m = mirror_queue_.front();
    Txn t;
    t.compare.push_back({coordinator_->keys().owner(m.shard), Compare::Target::create, Compare::Result::equal, m.fence, ""});
    t.success.push_back(Op::put(m.key, m.value));
    auto r = co_await etcd_->txn(t);
    if (std::holds_alternative<EtcdError>(r)) {  // etcd away: kept, tried again
      timer.expires_after(500ms);
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    if (!std::get<TxnResult>(r).succeeded)
      spdlog::info("ha: {} not written: this replica no longer owns shard {}", mirror_queue_.front().key, mirror_queue_.front().shard);
    else if (!mirror_queue_.front().escalated.empty())
      escalations_shared_.insert(mirror_queue_.front().escalated);
    mirror_queue_.pop_front();
  }
}

// The owner counts the votes kept in etcd for its pending proposals: one range of the votes
// prefix per round, whatever the number of services.
asio::awaitable<void> Node::count_votes() {
  asio::steady_timer timer(ioc_);
  const std::string prefix = coordinator_->keys().prefix() + "votes/";
  for (;;) {
    timer.expires_after(500ms);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    co_await sync_escalations();
    if (++rounds_ % 2 == 0) co_await sync_shared();
    bool any = false;
    for (const auto& p : pipeline_.proposals().all())
      if (p.state == ProposalState::pending && owns_service(p.decision.service)) any = true;
    if (!any) continue;
    auto read = co_await etcd_->range(prefix, true);
    if (std::holds_alternative<EtcdError>(read)) continue;
    for (const auto& kv : std::get<RangeResult>(read).kvs) {
      const std::string rest = kv.key.substr(prefix.size());  // <proposal>/<approver>
      const auto slash = rest.find('/');
      if (slash == std::string::npos) continue;
      const std::string id = rest.substr(0, slash), name = rest.substr(slash + 1);
      if (counted_.count({id, name})) continue;
      const Proposal* p = pipeline_.proposals().find(id);
      if (!p || p->state != ProposalState::pending || !owns_service(p->decision.service)) continue;
      const json v = json::parse(kv.value, nullptr, false);
      const config::Approver* who = nullptr;
      for (const auto& a : config_->approvers)
        if (a.name == name) who = &a;
      if (!who || !v.is_object()) continue;  // an approver no longer in this config: not counted
      counted_.insert({id, name});
      const auto out = pipeline_.vote(id, who, v.value("approve", false), v.value("comment", std::string()),
                                      "etcd (taken by replica " + v.value("via", std::string("?")) + ")");
      spdlog::info("ha: proposal {}: the vote of {} taken by replica {} is counted here ({})", id, name, v.value("via", std::string("?")),
                   out.error.empty() ? "ok" : out.error);
    }
  }
}

asio::awaitable<void> Node::adopt_proposals(int shard, std::int64_t fence) {
  const std::string prefix = coordinator_->keys().prefix() + "proposals/";
  auto read = co_await etcd_->range(prefix, true);
  if (auto* e = std::get_if<EtcdError>(&read)) {
    spdlog::warn("ha: the proposals of shard {} could not be read from etcd ({}); they are adopted at the next take-over", shard, e->message);
    co_return;
  }
  if (replica_->fence(shard) != fence) co_return;
  const auto now = std::chrono::system_clock::now();
  for (const auto& kv : std::get<RangeResult>(read).kvs) {
    const json j = json::parse(kv.value, nullptr, false);
    if (!j.is_object() || !j.contains("decision") || !j["decision"].is_object()) continue;
    const std::string service = j.value("service", std::string());
    const std::string state = j.value("state", std::string());
    // Approved but never started is adopted as pending: its votes, counted again, reach the
    // quorum again, and the fenced intent keeps it to one action.
    if (service.empty() || shard_of(service, cfg_.shards) != shard || (state != "pending" && state != "approved")) continue;
    Proposal p;
    p.id = j.value("id", std::string());
    p.decision = decision_from_json(service, j["decision"]);
    p.created_at = from_ms(j.value("created_at", 0LL));
    p.expires_at = from_ms(j.value("expires_at", 0LL));
    p.quorum = j.value("quorum", 1);
    if (p.id.empty() || p.expires_at <= now) continue;
    if (pipeline_.adopt_proposal(std::move(p), j.value("owner", std::string("?")))) {
      // Its record in etcd now names this owner (and the votes are counted from etcd).
      if (const Proposal* mine = pipeline_.proposals().find(j.value("id", std::string()))) mirror(*mine);
    }
  }
}

asio::awaitable<HttpRes> Node::vote(std::string id, const config::Approver* who, bool approve, std::string comment, std::string client) {
  const std::string verb = approve ? "approve" : "reject";
  if (!coordinator_) co_return HttpRes::json_error(503, "this replica has not joined the cluster yet: no vote is taken; try again");
  const std::string pkey = coordinator_->keys().proposal(id);
  const std::string vkey = coordinator_->keys().vote(id, who->name);
  // This replica's own proposal just made (a person's request): its copy reaches etcd in a moment.
  if (const Proposal* own = pipeline_.proposals().find(id); own && own->state == ProposalState::pending) {
    asio::steady_timer wait(ioc_);
    for (int i = 0; i < 50; ++i) {
      auto read = co_await etcd_->range(pkey);
      if (auto* rr = std::get_if<RangeResult>(&read); !rr || !rr->kvs.empty()) break;
      wait.expires_after(100ms);
      co_await wait.async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto read = co_await etcd_->range(pkey);
    if (auto* e = std::get_if<EtcdError>(&read))
      co_return HttpRes::json_error(e->unavailable ? 503 : 502, "etcd cannot take the vote now (" + e->message + "): no vote is taken; try again");
    const auto& kvs = std::get<RangeResult>(read).kvs;
    if (kvs.empty()) co_return HttpRes::json_error(404, "no proposal " + id);
    const json p = json::parse(kvs[0].value, nullptr, false);
    if (!p.is_object() || !p.contains("decision")) co_return HttpRes::json_error(502, "proposal " + id + " in etcd is not readable");
    const std::string service = p.value("service", std::string());
    const std::string state = p.value("state", std::string());
    if (state != "pending") co_return HttpRes::json_error(409, "proposal " + id + " is " + state);
    const auto d = decision_from_json(service, p["decision"]);
    // The severity's roles, or its secondary roles once `after` has passed since the proposal was made.
    const long long created = p.contains("created_at") && p["created_at"].is_number_integer() ? p["created_at"].get<long long>() : 0;
    const std::string role = pipeline_.proposals().role_for(*who, d.severity, policy::TimePoint(std::chrono::milliseconds(created)));
    if (role.empty()) {
      pipeline_.record(Event::approval_attempt, service,
                       {{"proposal", id}, {"action", verb}, {"approver", who->name}, {"source", client}, {"outcome", "forbidden"}});
      co_return HttpRes::json_error(403, who->name + " holds no role allowed to decide on " + policy::to_string(d.severity) + " proposals");
    }
    Txn t;
    t.compare.push_back({pkey, Compare::Target::mod, Compare::Result::equal, kvs[0].mod_revision, ""});
    t.compare.push_back({vkey, Compare::Target::create, Compare::Result::equal, 0, ""});
    const json v{{"approver", who->name}, {"role", role}, {"approve", approve}, {"comment", comment.substr(0, 500)}, {"via", cfg_.replica},
                 {"at_ms", std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count()}};
    t.success.push_back(Op::put(vkey, v.dump()));
    t.failure.push_back(Op::range(vkey));
    auto r = co_await etcd_->txn(t);
    if (auto* e = std::get_if<EtcdError>(&r))
      co_return HttpRes::json_error(e->unavailable ? 503 : 502, "etcd cannot take the vote now (" + e->message + "): no vote is taken; try again");
    const auto& res = std::get<TxnResult>(r);
    if (res.succeeded) {
      pipeline_.record(Event::approval_attempt, service,
                       {{"proposal", id}, {"action", verb}, {"approver", who->name}, {"role", role}, {"source", client}, {"outcome", "taken"},
                        {"via", cfg_.replica}, {"etcd_rev", res.revision}, {"comment", comment.substr(0, 500)}});
      spdlog::warn("proposal {}: {} by {} ({}), taken by replica {} in etcd (revision {}); the owner counts it", id, verb, who->name, role,
                   cfg_.replica, res.revision);
      co_return HttpRes{202, "application/json",
                        json{{"id", id}, {"state", "pending"}, {"vote", verb}, {"approver", who->name}, {"taken_by", cfg_.replica},
                             {"note", "the vote is kept in etcd; the replica that owns the service counts it towards the quorum"}}
                            .dump(2)};
    }
    if (!res.ranges.empty() && !res.ranges[0].empty())
      co_return HttpRes{200, "application/json", json{{"id", id}, {"vote", "duplicate"}, {"approver", who->name}, {"note", "the same approver counts once"}}.dump(2)};
    // The proposal changed between the read and the transaction: read it again.
  }
  co_return HttpRes::json_error(409, "proposal " + id + " kept changing while the vote was taken; try again");
}

asio::awaitable<void> Node::refresh(Cached& c, const std::string& prefix) {
  if (!coordinator_ || c.reading || std::chrono::steady_clock::now() - c.at < 1s) co_return;
  net::FlagGuard reading(c.reading);
  auto read = co_await etcd_->range(prefix, true);
  c.at = std::chrono::steady_clock::now();
  if (auto* e = std::get_if<EtcdError>(&read)) {
    c.error = e->message;
    co_return;
  }
  c.error.clear();
  c.kvs = std::move(std::get<RangeResult>(read).kvs);
}

// The JSON object of each cached value (those that are one), with the rest of its key.
static std::vector<std::pair<std::string, json>> objects(const std::vector<KeyValue>& kvs, const std::string& prefix) {
  std::vector<std::pair<std::string, json>> out;
  for (const auto& kv : kvs) {
    json j = json::parse(kv.value, nullptr, false);
    if (j.is_object() && kv.key.size() > prefix.size()) out.emplace_back(kv.key.substr(prefix.size()), std::move(j));
  }
  return out;
}

asio::awaitable<HttpRes> Node::services(json body) {
  const std::string owners_prefix = coordinator_ ? coordinator_->keys().prefix() + "shard/" : "";
  const std::string esc_prefix = coordinator_ ? coordinator_->keys().escalations() : "";
  co_await refresh(owners_cache_, owners_prefix);
  co_await refresh(escalations_cache_, esc_prefix);
  std::map<int, std::string> owners;  // P/shard/<k>/owner holds "<replica> <address>"
  for (const auto& kv : owners_cache_.kvs) {
    int k = -1;
    const char* first = kv.key.data() + owners_prefix.size();
    const auto [end, ec] = std::from_chars(first, kv.key.data() + kv.key.size(), k);
    if (ec == std::errc() && end != first && *end == '/') owners[k] = kv.value.substr(0, std::min<size_t>(kv.value.find(' '), 100));
  }
  const auto escalations = objects(escalations_cache_.kvs, esc_prefix);
  for (auto& s : body["services"]) {
    const std::string name = s.value("name", std::string());
    const int k = shard_of(name, cfg_.shards);
    const auto owner = owners.find(k);
    s["ha"] = {{"shard", k}, {"owner", owner == owners.end() ? json() : json(owner->second)}, {"this_replica", cfg_.replica},
               {"this_replica_owns", owns_service(name)}};
    for (const auto& [service, e] : escalations)
      if (service == name && !s.value("escalated", false)) {
        s["escalated"] = true;
        s["escalation"] = e.value("why", std::string("escalated")) + " (kept in etcd, by replica " + e.value("replica", std::string("?")) + ")";
      }
  }
  const std::string& error = !owners_cache_.error.empty() ? owners_cache_.error : escalations_cache_.error;
  if (!error.empty()) body["etcd_error"] = "owners and escalations could not be read from etcd (" + error + "); this replica's own view";
  co_return HttpRes{200, "application/json", body.dump(2)};
}

asio::awaitable<HttpRes> Node::incidents(json local) {
  const std::string prefix = coordinator_ ? coordinator_->keys().prefix() + "actions/" : "";
  co_await refresh(actions_cache_, prefix);
  std::set<std::string> here;
  for (const auto& i : local) here.insert(i.value("id", std::string()));
  for (const auto& [id, a] : objects(actions_cache_.kvs, prefix)) {
    if (here.count(id)) continue;
    local.push_back({{"id", id},
                     {"service", a.value("service", std::string())},
                     {"status", a.value("state", std::string())},
                     {"trigger", a.value("trigger", std::string())},
                     {"opened_at", a.value("at_ms", std::int64_t{0})},
                     {"release_from", a.value("from", std::string())},
                     {"release_to", a.value("to", std::string())},
                     {"replica", a.value("replica", std::string())},
                     {"source", "etcd"}});
  }
  json body{{"incidents", std::move(local)}, {"replica", cfg_.replica}};
  if (!actions_cache_.error.empty())
    body["etcd_error"] = "the other replicas' actions could not be read from etcd (" + actions_cache_.error + "); this replica's own";
  co_return HttpRes{200, "application/json", body.dump(2)};
}

asio::awaitable<HttpRes> Node::proposals(json local) {
  const std::string prefix = coordinator_ ? coordinator_->keys().prefix() + "proposals/" : "";
  co_await refresh(proposals_cache_, prefix);
  std::set<std::string> here;
  for (auto& p : local) {
    here.insert(p.value("id", std::string()));
    p["owner"] = cfg_.replica;
  }
  for (auto& [id, j] : objects(proposals_cache_.kvs, prefix)) {
    const std::string state = j.value("state", std::string());
    if (here.count(id) || (state != "pending" && state != "approved" && state != "executing")) continue;  // open ones only
    local.push_back(std::move(j));
  }
  json body{{"proposals", std::move(local)}, {"replica", cfg_.replica}};
  if (!proposals_cache_.error.empty())
    body["etcd_error"] = "the proposals of other replicas could not be read from etcd (" + proposals_cache_.error + "); only this replica's are listed";
  co_return HttpRes{200, "application/json", body.dump(2)};
}

void Node::resign() {
  if (!started_ || resigning_) return;
  resigning_ = true;
  net::spawn(ioc_.get_executor(),
             [this]() -> asio::awaitable<void> {
               net::FlagGuard resigning(resigning_);
               life_.end();
               co_await replica_->resign();
               spdlog::info("ha: replica {} resigned (lease revoked): another replica takes over now", cfg_.replica);
             },
             "ha", resign_life_);
}

void Node::stop() {
  life_.end();
  if (replica_) replica_->stop();
}

std::string Node::describe() const {
  if (!replica_) return "joining";
  switch (replica_->state()) {
    case Replica::State::starting:
      return "joining the cluster (no lease yet)";
    case Replica::State::cut_off:
      return "cut off from etcd: owns nothing until it reaches a quorum again";
    case Replica::State::standby:
      return "standby";
    case Replica::State::owner: {
      std::string shards;
      for (int k = 0; k < cfg_.shards; ++k)
        if (replica_->owns(k)) shards += (shards.empty() ? "" : ",") + std::to_string(k);
      return "owner of shard " + shards;
    }
  }
  return "unknown";
}

bool Node::ready() const {
  if (!replica_) return false;
  const auto s = replica_->state();
  return s == Replica::State::owner || s == Replica::State::standby;
}

void Node::refresh_metrics() {
  if (!replica_) return;
  const double left = std::chrono::duration<double>(replica_->lease_remaining()).count();
  metrics_.ha_lease_remaining(std::max(0.0, left));
  for (int k = 0; k < cfg_.shards; ++k) metrics_.ha_owner(k, replica_->owns(k));
}

}  // namespace lastgood::watchdog::ha
