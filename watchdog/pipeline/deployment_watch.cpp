#include "watchdog/pipeline/deployment_watch.hpp"
#include "watchdog/log_fields.hpp"


#include <spdlog/spdlog.h>

namespace lastgood::watchdog {

using nlohmann::json;

boost::asio::awaitable<std::optional<ReleaseChange>> DeploymentWatch::observe(Service& s) {
  if (!s.action) co_return std::nullopt;
  actions::Observation o = co_await s.action->observe();
  if (stopped_) co_return std::nullopt;
  if (!o.error.empty() || !o.live) {
    const std::string err = o.error.empty() ? "no live release found" : o.error;
    if (err != s.observe_error) logf::warn({.service = s.name()}, "service {}: cannot observe the deployment: {}", s.name(), err);
    s.observe_error = err;
    co_return std::nullopt;
  }
  if (!s.observe_error.empty()) logf::info({.service = s.name()}, "service {}: deployment readable again", s.name());
  s.observe_error.clear();
  {  // what the deployment itself lists: the unverified targets of a fresh install (cold start)
    std::vector<policy::Offered> offered;
    offered.reserve(o.history.size());
    for (const auto& h : o.history) {
      if (!actions::valid_release_name(h.id)) continue;
      policy::Offered r{h.id, std::nullopt};
      r.deployed_at = h.deployed_at;
      offered.push_back(std::move(r));
    }
    s.policy->offer(std::move(offered));
  }
  const auto* before = s.policy->deployment().live();
  if (before && before->id == o.live->id && before->migration == o.live->migration) co_return std::nullopt;
  ReleaseChange c;
  c.was = before ? before->id : "";
  c.live = o.live->id;
  c.new_id = !before || before->id != o.live->id;
  c.events = s.policy->on_release(o.live->id, o.live->deployed_at, clock_.now(), o.live->migration);
  json d{{"release", o.live->id}, {"previous", c.was.empty() ? json() : json(c.was)}, {"migration", o.live->migration}};
  if (o.live->deployed_at) d["deployed_at"] = ms(*o.live->deployed_at);
  rec_.record(Event::release_observed, s.name(), d);
  logf::info({.service = s.name(), .release = o.live->id}, "service {}: live release {} -> {}{}", s.name(), c.was.empty() ? "(unknown)" : c.was, o.live->id,
               o.live->migration ? " (carries a data migration)" : "");
  co_return c;
}

}  // namespace lastgood::watchdog
