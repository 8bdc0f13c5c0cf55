// Config loading through validation: any bytes give problems or a config, never a crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/config.hpp"
#include "watchdog/kinds.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto res = lastgood::config::load_text(text, "fuzz.json", lastgood::kinds(), {.resolve_secrets = false});
  for (const auto& p : res.problems) (void)p.to_string();
  return 0;
}
