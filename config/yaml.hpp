#pragma once
// YAML configs: the same schema as JSON, read into the same JSON tree so that every check and
// every error is shared. Scalars follow YAML 1.2's core schema (`yes`, `no`, `on`, `off` stay
// strings, as in Prometheus and Kubernetes); anchors, aliases and `<<` merge keys work; a key
// given twice is an error, as in JSON. What a document may cost is bounded (depth, node count,
// bytes after aliases are expanded), so a "billion laughs" file is refused, not expanded.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace lastgood::config {

struct YamlResult {
  nlohmann::json doc;
  bool ok = false;
  // Problems found while reading: JSON pointer and message. `ok` is false when any is set.
  std::vector<std::pair<std::string, std::string>> problems;
  // JSON pointer -> 1-based line where that value (or the key that names it) is written.
  std::map<std::string, int> lines;
  // The line for `pointer`, or for its nearest parent that has one; 0 when none.
  int line_of(std::string pointer) const;
};

struct YamlLimits {
  size_t max_depth = 64;
  size_t max_nodes = 2'000'000;          // after aliases are expanded
  size_t max_bytes = 64u * 1024 * 1024;  // of scalars, after aliases are expanded
};

YamlResult yaml_to_json(const std::string& text, YamlLimits limits = {});

// Whether a config file name says YAML (".yaml" or ".yml").
bool is_yaml_name(const std::string& name);

}  // namespace lastgood::config
