#pragma once
#include <string>
#include <vector>

namespace lastgood::config {
struct Config;
}

namespace lastgood::watchdog {
// What a config exposes that it probably should not (e.g. a non-loopback listen address with no
// approvers); `validate` prints them as warnings and `run` logs them.
std::vector<std::string> security_warnings(const config::Config& cfg);
// `lastgood validate -c FILE`: writes "FILE: ok (...)" or one line per problem to `out`;
// returns the exit code (0 valid, 2 invalid). Secrets are checked for shape, not read.
int validate_file(const std::string& path, std::string& out);
}
