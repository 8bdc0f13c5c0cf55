#pragma once
// The "command" deployment kind: `rollback` and optional `observe` as argv lists (no shell) with
// ${service} ${from} ${to} ${reason} ${trigger}; `timeout` (default 2m) kills the process group;
// only `env_allow` variables are passed; the exit status is checked; output captured (capped).
#include <optional>
#include <string>
#include <vector>

#include "actions/action.hpp"

namespace lastgood::actions {

struct CommandSpec final : config::KindSpec {
  std::vector<std::string> rollback;  // argv, not empty
  std::vector<std::string> observe;   // argv; empty: none
  std::optional<config::Duration> timeout;
  std::vector<std::string> env_allow{"PATH"};
};

extern const Kind command_kind;

}  // namespace lastgood::actions
