#pragma once
// `lastgood ctl`: a client of a running lastgood (like amtool or `monit status`), speaking its
// HTTP API (design.md, Command line). Exit codes: 0 ok, 1 refused or unreachable (with the
// server's reason), 2 usage.
#include <string>
#include <vector>

namespace lastgood::watchdog {

// `args`: what follows "ctl" on the command line.
int run_ctl(const std::vector<std::string>& args);

}  // namespace lastgood::watchdog
