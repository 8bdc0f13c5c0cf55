#pragma once
// The "npm_registry" probe kind: the packument is served, `tag` resolves to a version, that
// version's tarball downloads and matches dist.integrity (sha512; else shasum), optionally not
// deprecated. A mismatch fails with condition "integrity". The version is reported as
// observed_release.
#include <optional>
#include <string>

#include "config/secret.hpp"
#include "probes/probe.hpp"

namespace lastgood::probes {

struct NpmRegistrySpec final : config::KindSpec {
  std::string registry = "https://registry.npmjs.org/";
  std::string package;
  std::string tag = "latest";
  bool check_deprecated = false;
  std::optional<config::Secret> token;                  // for private registries
  std::size_t max_tarball_bytes = 64 * 1024 * 1024;
};

extern const Kind npm_registry_kind;

}  // namespace lastgood::probes
