#include "watchdog/ha/node.hpp"

#include <algorithm>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "net/tls.hpp"
#include "watchdog/ha/placement.hpp"
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

Node::Node(asio::io_context& ioc, const config::Ha& cfg, Pipeline& pipeline, Metrics& metrics)
    : ioc_(ioc), cfg_(cfg), pipeline_(pipeline), metrics_(metrics) {
  if (cfg_.user)
    throw std::runtime_error("ha.auth: etcd user/password authentication is not supported by this version; use TLS client certificates "
                             "(ha.tls.cert_file, key_file) or an etcd without auth on a private network");
  EtcdOptions eo;
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
  replica_ = std::make_unique<Replica>(ioc_.get_executor(), *etcd_, ro,
                                       [this](int shard, std::int64_t fence, const std::string& why) { on_change(shard, fence, why); });
  coordinator_ = std::make_unique<HaCoordinator>(
      cfg_.cluster, cfg_.replica, cfg_.shards, [this](int shard) { return replica_->fence(shard); }, [this] { return replica_->lease(); },
      etcd_.get());
  pipeline_.set_coordinator(*coordinator_);
  replica_->start();
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
  asio::steady_timer timer(ioc_);
  for (size_t si = 0; si < pipeline_.services(); ++si) {
    const std::string& name = pipeline_.service_name(si);
    if (shard_of(name, cfg_.shards) != shard) continue;
    std::string error;
    auto inherited = co_await coordinator_->inherited(name, &error);
    if (!error.empty()) spdlog::warn("ha: service {}: its active action could not be read from etcd ({}); checked again at the next take-over", name, error);
    if (inherited) {
      // Its owner may still be in the middle of it (frozen, or its last request in flight): wait
      // until no step of the kind can still be running, then look at the target.
      const auto wait = pipeline_.step_timeout(si) + 2s;
      spdlog::warn("ha: service {}: action {} of replica {} was left unfinished; reconciling it in {} ms (observed, never re-run)", name,
                   inherited->action_id, inherited->record.value("replica", std::string("?")),
                   std::chrono::duration_cast<std::chrono::milliseconds>(wait).count());
      timer.expires_after(wait);
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
      if (replica_->fence(shard) != fence) co_return;  // lost meanwhile: the next owner does it
      co_await pipeline_.adopt(si, inherited->record);
      const auto live = pipeline_.live_release(si);
      const bool switched = live && *live == inherited->record.value("to", std::string());
      json outcome = inherited->record;
      outcome["state"] = "reconciled";
      outcome["switched"] = switched;
      outcome["live"] = live.value_or("unknown");
      outcome["reconciled_by"] = cfg_.replica;
      const bool closed = co_await coordinator_->close_inherited(name, *inherited, outcome);
      if (!closed) spdlog::warn("ha: service {}: action {} could not be closed in etcd (changed meanwhile, or etcd away)", name, inherited->action_id);
    }
    if (replica_->fence(shard) != fence) co_return;
    pipeline_.decide_again(si);
  }
}

void Node::resign() {
  if (!started_ || resigning_) return;
  resigning_ = true;
  net::spawn(ioc_.get_executor(),
             [this]() -> asio::awaitable<void> {
               struct Done {
                 bool& flag;
                 ~Done() { flag = false; }
               } done{resigning_};
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
