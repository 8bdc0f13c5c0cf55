#pragma once
// The "local_symlink" deployment kind: `path/releases/*` and `path/current` on this host. Roll
// back: a symlink under a temp name in `path`, rename(2) over `current` (atomic), fsync of the
// directory.
#include <string>

#include "actions/action.hpp"

namespace lastgood::actions {

struct LocalSymlinkSpec final : config::KindSpec {
  std::string path;  // absolute
};

extern const Kind local_symlink_kind;

}  // namespace lastgood::actions
