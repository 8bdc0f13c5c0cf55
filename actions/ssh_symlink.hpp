#pragma once
// The "ssh_symlink" deployment kind: `path/releases/*` and `path/current` on a host over SSH
// (libssh2). Roll back with `ln -sfn releases/X current.tmp.N && mv -Tf current.tmp.N current`,
// then each `after_switch` command; a non-zero exit stops the sequence and is reported with its
// stderr.
#include <optional>
#include <string>
#include <vector>

#include "actions/action.hpp"

namespace lastgood::actions {

struct SshSymlinkSpec final : config::KindSpec {
  std::string host;
  int port = 22;
  std::string user;
  std::string key_file;  // absolute; empty with use_agent
  bool use_agent = false;
  std::string known_hosts;  // absolute
  std::string path;         // absolute
  std::vector<std::string> after_switch;
  std::optional<config::Duration> timeout;
};

extern const Kind ssh_symlink_kind;

}  // namespace lastgood::actions
