// URL parsing, durations and RFC 3339 times (all read from configs or from the network).
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/duration.hpp"
#include "net/http_client.hpp"
#include "net/http_once.hpp"
#include "net/npm.hpp"
#include "net/time.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (auto u = lastgood::net::parse_url(text)) (void)u->origin();
  (void)lastgood::config::parse_duration(text);
  (void)lastgood::net::parse_rfc3339(text);
  return 0;
}
