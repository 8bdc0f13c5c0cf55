#pragma once
// The "ssh_symlink" deployment kind: `path/releases/*` and `path/current` on a host over SSH
// (libssh2). Roll back: each `before_switch` step, then `ln -sfn releases/X current.tmp.N && mv -Tf
// current.tmp.N current` (checked against `from` in the same command), then each `after_switch`
// step; a non-zero exit stops the sequence and is reported with its stderr, and a failed
// after_switch step puts the previous link back (restore_on_failure, the default).
#include <optional>
#include <string>
#include <vector>

#include "actions/action.hpp"
#include "actions/switch_steps.hpp"

namespace lastgood::actions {

struct SshSymlinkSpec final : config::KindSpec {
  std::string host;
  int port = 22;
  std::string user;
  std::string key_file;  // absolute; empty with use_agent
  bool use_agent = false;
  std::string known_hosts;  // absolute
  std::string path;         // absolute
  SwitchSteps steps;  // before_switch, after_switch (run on the host, in `path`), restore_on_failure
  std::optional<config::Duration> timeout;
};

extern const Kind ssh_symlink_kind;

}  // namespace lastgood::actions
