// URL parsing, durations and RFC 3339 times (all read from configs or from the network).
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/duration.hpp"
#include "probes/http_client.hpp"
#include "probes/npm.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (auto u = lastgood::probes::parse_url(text)) (void)u->origin();
  (void)lastgood::config::parse_duration(text);
  (void)lastgood::probes::parse_rfc3339(text);
  return 0;
}
