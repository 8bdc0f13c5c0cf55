#pragma once
// The "npm_package" deployment kind: observe the tagged version and its publish time; roll back by
// moving the tag (`retag`), then per `strategy` deprecate the bad version or unpublish it (only
// with allow_unpublish and under 72 h after publish; otherwise deprecate, saying why).
#include <optional>
#include <string>

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
};

extern const Kind npm_package_kind;

}  // namespace lastgood::actions
