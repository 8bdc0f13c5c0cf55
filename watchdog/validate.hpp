#pragma once
#include <string>

namespace lastgood::watchdog {
// `lastgood validate -c FILE`: writes "FILE: ok (...)" or one line per problem to `out`;
// returns the exit code (0 valid, 2 invalid). Secrets are checked for shape, not read.
int validate_file(const std::string& path, std::string& out);
}
