// The docs keep up with the code: every key an example config uses, and every probe and deployment
// kind, is described in docs/configuration.md (the metrics table is checked against a live
// /metrics in the integration tests).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "watchdog/kinds.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Keys whose children are the user's own names (headers, environment, templates, label maps,
// severities), not config keys.
const std::set<std::string> kUserMaps = {"headers", "env", "body", "severity_map", "authority", "labels", "match", "json", "header"};

void keys_of(const json& j, const std::string& at, std::map<std::string, std::string>& out) {
  if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) keys_of(j[i], at + "/" + std::to_string(i), out);
    return;
  }
  if (!j.is_object()) return;
  for (const auto& [k, v] : j.items()) {
    out.emplace(k, at + "/" + k);
    if (!kUserMaps.count(k)) keys_of(v, at + "/" + k, out);
    else if (k == "authority")
      for (const auto& [sev, a] : v.items()) keys_of(a, at + "/authority/" + sev, out);
  }
}

// Whether the doc describes the key: `key` in a table, `block.key`, a rule's `{count, of}`, or
// an example's "key": value.
bool documented(const std::string& doc, const std::string& k) {
  for (const std::string& form : {"`" + k + "`", "." + k + "`", "{" + k + ",", "{" + k + "}", "{" + k + " ", ", " + k + ",", ", " + k + "}",
                                  ", " + k + " (", ", " + k + ":", "\"" + k + "\":"})
    if (doc.find(form) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("docs/configuration.md names every key the examples use and every kind", "[docs]") {
  const std::string doc = slurp(LASTGOOD_SOURCE_DIR "/docs/configuration.md");
  REQUIRE(doc.size() > 1000);
  std::map<std::string, std::string> keys;  // key -> where first seen
  int configs = 0;
  for (const auto& e : fs::recursive_directory_iterator(LASTGOOD_SOURCE_DIR "/examples")) {
    if (e.path().extension() != ".json") continue;
    auto j = json::parse(slurp(e.path()), nullptr, false);
    if (!j.is_object() || !j.contains("services")) continue;  // a dashboard, not a config
    ++configs;
    std::map<std::string, std::string> here;
    keys_of(j, e.path().filename().string(), here);
    keys.insert(here.begin(), here.end());
  }
  CHECK(configs >= 8);
  for (const auto& [k, where] : keys) {
    INFO("key \"" << k << "\" (first used at " << where << ")");
    CHECK(documented(doc, k));
  }
  for (const auto& k : lastgood::kinds().probes) {
    INFO("probe kind " << k.name);
    CHECK(doc.find(std::string("`") + k.name + "`") != std::string::npos);
  }
  for (const auto& k : lastgood::kinds().deployments) {
    INFO("deployment kind " << k.name);
    CHECK(doc.find(std::string("`") + k.name + "`") != std::string::npos);
  }
}
