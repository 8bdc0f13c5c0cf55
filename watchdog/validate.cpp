#include "watchdog/validate.hpp"

#include "config/config.hpp"
#include "probes/prometheus.hpp"
#include "watchdog/kinds.hpp"

namespace lastgood::watchdog {

std::vector<std::string> security_warnings(const config::Config& cfg) {
  std::vector<std::string> out;
  const std::string host = cfg.listen.front() == '[' ? cfg.listen.substr(1, cfg.listen.find(']') - 1) : cfg.listen.substr(0, cfg.listen.rfind(':'));
  const bool loopback = host.rfind("127.", 0) == 0 || host == "::1" || host == "localhost";
  if (!loopback && cfg.approvers.empty())
    out.push_back("listen " + cfg.listen +
                  " is not a loopback address and no approvers are configured: anyone who can reach it can read the API and page, "
                  "and nobody can approve, reject or clear (those answer 401/403); add approvers or listen on 127.0.0.1");
  if (cfg.approvers.empty())
    for (const auto& svc : cfg.services)
      if (svc.deployment && svc.rollback.mode == "approve")
        out.push_back("service " + svc.name +
                      " rolls back only on approval (rollback.mode \"approve\") but no approvers are configured: its proposals can only expire");
  // A Prometheus signal lags the deploy by its query's range: a release verified good sooner
  // would be judged on the previous release's traffic.
  for (const auto& svc : cfg.services) {
    if (!svc.deployment) continue;
    for (const auto& p : svc.probes) {
      if (p.kind != "prometheus") continue;
      const auto range = probes::longest_range(config::spec_as<probes::PrometheusSpec>(p.spec).query);
      if (range && svc.rollback.good_after < *range)
        out.push_back("service " + svc.name + ": probe " + p.name + " queries a range of " + config::format_duration(*range) +
                      ", longer than rollback.good_after (" + config::format_duration(svc.rollback.good_after) +
                      "): a release could be verified good on the previous release's traffic; make good_after at least " +
                      config::format_duration(*range));
    }
  }
  return out;
}

int validate_file(const std::string& path, std::string& out) {
  auto res = config::load_file(path, lastgood::kinds(), {.resolve_secrets = false});
  if (!res.config) {
    for (const auto& p : res.problems) out += p.to_string() + "\n";
    return 2;
  }
  size_t probes = 0;
  for (const auto& s : res.config->services) probes += s.probes.size();
  out += path + ": ok (" + std::to_string(res.config->services.size()) + " service(s), " + std::to_string(probes) + " probe(s))\n";
  for (const auto& w : security_warnings(*res.config)) out += path + ": warning: " + w + "\n";
  return 0;
}

}  // namespace lastgood::watchdog
