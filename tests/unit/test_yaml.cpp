// YAML configs: the same schema and the same errors as JSON, with line numbers; YAML 1.2 scalars;
// anchors and merge keys; and hostile documents (alias bombs, self-reference, depth, garbage)
// refused with a clear problem, never expanded or crashed on.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config/config.hpp"
#include "config/yaml.hpp"
#include "watchdog/kinds.hpp"
#include "watchdog/validate.hpp"

using nlohmann::json;
namespace fs = std::filesystem;
namespace cfg = lastgood::config;

namespace {

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string problems_of(const cfg::LoadResult& r) {
  std::string s;
  for (const auto& p : r.problems) s += p.to_string() + "\n";
  return s;
}

cfg::LoadResult load_yaml(const std::string& text) {
  return cfg::load_text(text, "lastgood.yaml", lastgood::kinds(), {.resolve_secrets = false});
}

const char* kGood = R"(# a comment at the top
listen: 127.0.0.1:9464
state_dir: /tmp/lastgood-yaml   # and one at the end of a line
services:
  - name: www
    probes:
      - name: home
        kind: http
        url: http://127.0.0.1:8080/
        interval: 10s
        timout: 2s
    triggers:
      - name: down
        severity: P0
        rule: {kind: consecutive_failures, count: 3}
)";

}  // namespace

TEST_CASE("every YAML example reads the same as its JSON twin, and validates", "[config][examples][yaml]") {
  int twins = 0;
  for (const auto& e : fs::recursive_directory_iterator(LASTGOOD_SOURCE_DIR "/examples")) {
    if (e.path().extension() != ".yaml" || e.path().filename() == "kubernetes-sidecar.yaml") continue;
    INFO(e.path().string());
    auto twin = e.path();
    twin.replace_extension(".json");
    REQUIRE(fs::exists(twin));
    auto y = cfg::yaml_to_json(read(e.path()));
    for (const auto& [ptr, msg] : y.problems) UNSCOPED_INFO(ptr << ": " << msg);
    REQUIRE(y.ok);
    CHECK(y.doc == json::parse(read(twin)));
    std::string out;
    CHECK(lastgood::watchdog::validate_file(e.path().string(), out) == 0);
    INFO(out);
    ++twins;
  }
  CHECK(twins >= 12);
}

TEST_CASE("a YAML config's problems name the line, the JSON pointer and what was expected", "[config][yaml]") {
  auto r = load_yaml(kGood);
  REQUIRE_FALSE(r.config);
  REQUIRE(r.problems.size() == 1);
  CHECK(r.problems[0].to_string() == "lastgood.yaml:11: /services/0/probes/0/timout: unknown key \"timout\" (did you mean \"timeout\"?)");

  std::string fixed = kGood;
  fixed.replace(fixed.find("timout"), 6, "timeout");
  auto ok = load_yaml(fixed);
  INFO(problems_of(ok));
  REQUIRE(ok.config);
  CHECK(ok.config->services.at(0).probes.at(0).timeout == cfg::Duration{2000});

  // A missing key is reported at the line of the object that lacks it.
  auto missing = load_yaml("services:\n  - name: www\n    probes:\n      - kind: http\n        url: http://127.0.0.1:1/\n");
  REQUIRE_FALSE(missing.config);
  CHECK_THAT(problems_of(missing), Catch::Contains("lastgood.yaml:4: /services/0/probes/0/name: required key is missing"));
}

TEST_CASE("YAML 1.2 scalars: yes/no are strings, numbers and null as JSON has them", "[config][yaml]") {
  auto y = cfg::yaml_to_json("a: yes\nb: true\nc: 0x10\nd: 0o17\ne: \"10\"\nf: 10\ng: 2.5\nh: ~\ni:\nj: 'null'\nk: -7\nl: 1e3\nm: 18446744073709551615\n");
  REQUIRE(y.ok);
  CHECK(y.doc["a"] == "yes");
  CHECK(y.doc["b"] == true);
  CHECK(y.doc["c"] == 16);
  CHECK(y.doc["d"] == 15);
  CHECK(y.doc["e"] == "10");
  CHECK(y.doc["f"] == 10);
  CHECK(y.doc["g"] == 2.5);
  CHECK(y.doc["h"].is_null());
  CHECK(y.doc["i"].is_null());
  CHECK(y.doc["j"] == "null");
  CHECK(y.doc["k"] == -7);
  CHECK(y.doc["l"] == 1000.0);
  CHECK(y.doc["m"] == 18446744073709551615ull);

  for (const char* bad : {"a: 1e999\n", "a: .inf\n", "a: -.Inf\n", "a: .nan\n", "a: 99999999999999999999999\n", "a: !!int ten\n", "a: !custom x\n"}) {
    INFO(bad);
    auto b = cfg::yaml_to_json(bad);
    CHECK_FALSE(b.ok);
    REQUIRE(b.problems.size() == 1);
    CHECK(b.problems[0].first == "/a");
  }

  // A YAML 1.1 boolean where lastgood wants true/false says why.
  std::string text = kGood;
  text.replace(text.find("timout: 2s"), 10, "timeout: 2s\n        insecure_skip_verify: no");
  auto r = load_yaml(text);
  CHECK_THAT(problems_of(r), Catch::Contains("lastgood.yaml:12: /services/0/probes/0/insecure_skip_verify: expected true or false, found the string \"no\""));
}

TEST_CASE("YAML anchors, aliases and << merge keys share probe defaults", "[config][yaml]") {
  const char* text = R"(
defaults: &probe
  kind: http
  interval: 5s
  timeout: 1s
services:
  - name: www
    probes:
      - <<: *probe
        name: home
        url: http://127.0.0.1:8080/
      - <<: *probe
        name: api
        url: http://127.0.0.1:8081/
        timeout: 3s
)";
  auto y = cfg::yaml_to_json(text);
  REQUIRE(y.ok);
  const auto& p = y.doc["services"][0]["probes"];
  CHECK(p[0] == json{{"name", "home"}, {"url", "http://127.0.0.1:8080/"}, {"kind", "http"}, {"interval", "5s"}, {"timeout", "1s"}});
  CHECK(p[1]["timeout"] == "3s");  // a key written here wins over the merged one
  CHECK(p[1]["kind"] == "http");
  // `defaults` is not a lastgood key: the config names it, at its line.
  auto r = load_yaml(text);
  CHECK_THAT(problems_of(r), Catch::Contains("lastgood.yaml:2: /defaults: unknown key \"defaults\""));
  // Merging a scalar is refused.
  auto bad = cfg::yaml_to_json("a: &x 3\nb:\n  <<: *x\n");
  CHECK_FALSE(bad.ok);
}

TEST_CASE("hostile YAML is refused with a problem, never expanded, crashed on or thrown", "[config][yaml][hostile]") {
  SECTION("a key given twice names both lines") {
    auto y = cfg::yaml_to_json("services: []\nlisten: 127.0.0.1:1\nservices: []\n");
    REQUIRE_FALSE(y.ok);
    CHECK(y.problems[0].second == "the key \"services\" is given twice in this mapping, at lines 1 and 3: give it once");
  }
  SECTION("an alias bomb stops at the node budget") {
    std::string s = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
    for (int i = 1; i < 12; ++i) {
      s += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
      for (int k = 0; k < 10; ++k) s += (k ? ", *a" : "*a") + std::to_string(i - 1);
      s += "]\n";
    }
    auto y = cfg::yaml_to_json(s, {.max_depth = 64, .max_nodes = 100'000, .max_bytes = 1 << 20});
    REQUIRE_FALSE(y.ok);
    CHECK_THAT(y.problems[0].second, Catch::Contains("more than 100000 values once aliases are expanded"));
  }
  SECTION("a mapping of long strings through aliases stops at the byte budget") {
    std::string s = "s: &s " + std::string(100'000, 'x') + "\nl: [";
    for (int k = 0; k < 200; ++k) s += (k ? ", *s" : "*s");
    s += "]\n";
    auto y = cfg::yaml_to_json(s, {.max_depth = 64, .max_nodes = 100'000, .max_bytes = 8 << 20});
    REQUIRE_FALSE(y.ok);
    CHECK_THAT(y.problems[0].second, Catch::Contains("MiB of text once aliases are expanded"));
  }
  SECTION("an alias that contains itself") {
    auto y = cfg::yaml_to_json("a: &a [*a]\n");
    REQUIRE_FALSE(y.ok);
  }
  SECTION("nesting deeper than any config, in flow and block style") {
    auto flow = cfg::yaml_to_json(std::string(100'000, '['));
    REQUIRE_FALSE(flow.ok);
    CHECK_THAT(flow.problems[0].second, Catch::Contains("nested deeper than"));
    std::string block;
    for (int i = 0; i < 100; ++i) block += std::string(size_t(i) * 2, ' ') + "k:\n";
    auto b = cfg::yaml_to_json(block);
    REQUIRE_FALSE(b.ok);
    CHECK_THAT(b.problems[0].second, Catch::Contains("nested deeper than 64 levels"));
  }
  SECTION("several documents, an empty file, a syntax error with its line") {
    CHECK_THAT(cfg::yaml_to_json("a: 1\n---\nb: 2\n").problems.at(0).second, Catch::Contains("2 YAML documents"));
    CHECK_THAT(cfg::yaml_to_json("").problems.at(0).second, Catch::Contains("empty"));
    CHECK_THAT(cfg::yaml_to_json("a: [1, 2\n").problems.at(0).second, Catch::StartsWith("not valid YAML: line 2"));
    CHECK_THAT(cfg::yaml_to_json("? [a]\n: 1\n").problems.at(0).second, Catch::Contains("not a plain string"));
  }
#ifndef LASTGOOD_SANITIZED
  // Not under ASan: the child has no address-space limit there (ASan reserves terabytes), and the
  // inputs that make yaml-cpp allocate without bound would take the machine's memory instead.
  SECTION("random bytes never throw") {
    std::mt19937 rng(20261206);
    for (int i = 0; i < 300; ++i) {
      std::string s(1 + rng() % 2000, '\0');
      for (auto& ch : s) ch = static_cast<char>("ab:-[]{}&*!|>'\"#\n  ,?%@`\\"[rng() % 27]);
      CHECK_NOTHROW(cfg::yaml_to_json(s));
      CHECK_NOTHROW(load_yaml(s));
    }
  }
#endif
  SECTION("an inline token is never quoted back in a problem") {
    auto r = load_yaml("approvers:\n  - name: a\n    roles: [x]\n    token: tok-VERY-SECRET\n");
    REQUIRE_FALSE(r.problems.empty());
    CHECK_THAT(problems_of(r), !Catch::Contains("VERY-SECRET"));
  }
}

TEST_CASE("a config file larger than 64 MiB is refused before it is read whole", "[config]") {
  const fs::path p = fs::temp_directory_path() / ("lastgood-huge-" + std::to_string(::getpid()) + ".yaml");
  { std::ofstream(p) << "services: []\n"; }
  fs::resize_file(p, 65u << 20);  // sparse: no disk used
  auto r = cfg::load_file(p.string(), lastgood::kinds());
  fs::remove(p);
  REQUIRE_FALSE(r.config);
  CHECK_THAT(problems_of(r), Catch::Contains("larger than 64 MiB"));
}

TEST_CASE("out of descriptors, a YAML config is refused, never read in the daemon's own process", "[config][yaml][faults]") {
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &old) == 0);
  // Fill the table under a low soft limit, so that the reader's pipe cannot be made.
  rlimit low = old;
  low.rlim_cur = 64;
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  std::vector<int> held;
  for (int fd; (fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) held.push_back(fd);
  auto y = cfg::yaml_to_json("services: []\n");
  for (int fd : held) ::close(fd);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &old) == 0);
  REQUIRE_FALSE(y.ok);
  REQUIRE(y.problems.size() == 1);
  CHECK_THAT(y.problems[0].second, Catch::StartsWith("the YAML reader could not be started (Too many open files)"));
  // With descriptors again, the same text reads.
  CHECK(cfg::yaml_to_json("services: []\n").ok);
}
