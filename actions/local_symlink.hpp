#pragma once
// The "local_symlink" deployment kind: `path/releases/*` and `path/current` on this host. Roll
// back: `before_switch` steps, a symlink under a temp name in `path`, rename(2) over `current`
// (atomic), fsync of the directory, then `after_switch` steps (the previous link put back when one
// fails, unless restore_on_failure is false). Steps run as child processes in `path`.
#include <optional>
#include <string>

#include "actions/action.hpp"
#include "actions/switch_steps.hpp"

namespace lastgood::actions {

struct LocalSymlinkSpec final : config::KindSpec {
  std::string path;  // absolute
  SwitchSteps steps;  // before_switch, after_switch, restore_on_failure
  std::optional<config::Duration> timeout;  // of each step (default 2m)
};

extern const Kind local_symlink_kind;

}  // namespace lastgood::actions
