#include "watchdog/validate.hpp"

#include "config/config.hpp"

namespace lastgood::watchdog {

int validate_file(const std::string& path, std::string& out) {
  auto res = config::load_file(path, {.resolve_secrets = false});
  if (!res.config) {
    for (const auto& p : res.problems) out += p.to_string() + "\n";
    return 2;
  }
  size_t probes = 0;
  for (const auto& s : res.config->services) probes += s.probes.size();
  out += path + ": ok (" + std::to_string(res.config->services.size()) + " service(s), " + std::to_string(probes) + " probe(s))\n";
  return 0;
}

}  // namespace lastgood::watchdog
