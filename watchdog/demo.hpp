#pragma once
#include <optional>
#include <string>

#include "config/duration.hpp"

namespace lastgood::watchdog {

struct DemoOptions {
  std::string listen = "127.0.0.1:9464";      // lastgood's own server; falls back to a free port when taken
  std::optional<config::Duration> run_for;     // exit after this long (default: until Ctrl-C)
  bool keep = false;                           // keep the demo's folder (state, ledger, incidents) at the end
};

// `lastgood demo`: a self-contained scenario needing nothing but the binary. Returns the exit code.
int run_demo(const DemoOptions& opts);

}  // namespace lastgood::watchdog
