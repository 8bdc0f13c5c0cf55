#pragma once
// The "npm_package" deployment kind: observe the tagged version and its publish time; roll back by
// moving the tag (`retag`), then per `strategy` deprecate the bad version or unpublish it (only
// with allow_unpublish and under 72 h after publish, and when the registry allows it; otherwise
// deprecate, saying why). Before the tag moves, the target's tarball is checked (integrity, and an
// optional smoke command run in the unpacked package).
#include <optional>
#include <string>
#include <vector>

#include "actions/action.hpp"

namespace lastgood::actions {

struct NpmPackageSpec final : config::KindSpec {
  std::string registry = "https://registry.npmjs.org/";
  std::string package;
  config::Secret token;
  std::string tag = "latest";
  std::optional<config::Duration> timeout;
  std::string strategy = "retag";  // retag | deprecate | unpublish
  bool allow_unpublish = false;
  // Before the tag moves, the target version's tarball is downloaded and checked against its
  // dist.integrity (verify.integrity, default true) and, when given, a smoke command runs in the
  // unpacked package (verify.command, argv, e.g. ["node", "-e", "require('./')"]); a target that
  // fails either is never tagged.
  bool verify_integrity = true;
  std::vector<std::string> verify_command;
  std::optional<config::Duration> verify_timeout;  // of the command (default 2m)
};

extern const Kind npm_package_kind;

}  // namespace lastgood::actions
