// examples/kubernetes-sidecar.yaml agrees with itself: the config in its ConfigMap validates, the
// probe looks where the app container listens (nginx's own config, mounted from the manifest),
// lastgood reads the file the ConfigMap provides and listens on its declared port, and the
// releases volume its deployment switches is the one the app serves from.
#include <catch2/catch.hpp>

#include <fstream>
#include <regex>
#include <sstream>

#include "config/config.hpp"
#include "config/yaml.hpp"
#include "watchdog/kinds.hpp"

using nlohmann::json;
namespace cfg = lastgood::config;

namespace {

std::vector<json> manifests() {
  std::ifstream in(LASTGOOD_SOURCE_DIR "/examples/kubernetes-sidecar.yaml");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  std::vector<json> docs;
  size_t start = 0;
  for (;;) {
    const size_t sep = text.find("\n---\n", start);
    auto y = cfg::yaml_to_json(text.substr(start, sep == std::string::npos ? std::string::npos : sep + 1 - start));
    for (const auto& [p, m] : y.problems) UNSCOPED_INFO(p << ": " << m);
    REQUIRE(y.ok);
    docs.push_back(std::move(y.doc));
    if (sep == std::string::npos) break;
    start = sep + 5;
  }
  return docs;
}

const json& find(const std::vector<json>& docs, const std::string& kind, const std::string& name) {
  for (const auto& d : docs)
    if (d.value("kind", "") == kind && d["metadata"].value("name", "") == name) return d;
  FAIL("no " << kind << " " << name);
  throw;
}

const json& container(const json& deployment, const std::string& name) {
  for (const auto& c : deployment["spec"]["template"]["spec"]["containers"])
    if (c.value("name", "") == name) return c;
  FAIL("no container " << name);
  throw;
}

std::string mount_of(const json& c, const std::string& volume, bool* read_only = nullptr) {
  for (const auto& m : c["volumeMounts"])
    if (m["name"] == volume) {
      if (read_only) *read_only = m.value("readOnly", false);
      return m["mountPath"];
    }
  return "";
}

}  // namespace

TEST_CASE("the Kubernetes sidecar example: ports, paths and config agree", "[config][examples]") {
  const auto docs = manifests();
  const auto& lg_cm = find(docs, "ConfigMap", "lastgood-config");
  const auto& nginx_cm = find(docs, "ConfigMap", "app-nginx");
  const auto& dep = find(docs, "Deployment", "app");
  const auto& app = container(dep, "app");
  const auto& lg = container(dep, "lastgood");

  // The config validates (tokens come from the pod's env, not resolved here).
  REQUIRE(lg_cm["data"].size() == 1);
  const std::string key = lg_cm["data"].begin().key();
  const std::string text = lg_cm["data"].begin().value();
  auto loaded = cfg::load_text(text, key, lastgood::kinds(), {.resolve_secrets = false});
  for (const auto& p : loaded.problems) UNSCOPED_INFO(p.to_string());
  REQUIRE(loaded.config);
  const json conf = cfg::yaml_to_json(text).doc;

  // lastgood is started on the file the ConfigMap provides.
  const auto& args = lg["args"];
  auto c = std::find(args.begin(), args.end(), "-c");
  REQUIRE(c != args.end());
  CHECK(*(c + 1) == mount_of(lg, "config") + "/" + key);

  // It listens on the port the pod declares (and Prometheus is told to scrape).
  const std::string listen = conf["listen"];
  const std::string lg_port = listen.substr(listen.rfind(':') + 1);
  CHECK(std::to_string(lg["ports"][0]["containerPort"].get<int>()) == lg_port);
  CHECK(dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == lg_port);
  CHECK(listen.rfind("0.0.0.0:", 0) == 0);  // reachable by the kubelet's probes

  // The probe looks where the app listens: nginx's listen port, declared as the app's port.
  const std::string nginx_conf = nginx_cm["data"]["default.conf"];
  std::smatch m;
  REQUIRE(std::regex_search(nginx_conf, m, std::regex(R"(listen\s+(\d+);)")));
  const std::string app_port = m[1];
  CHECK(std::to_string(app["ports"][0]["containerPort"].get<int>()) == app_port);
  CHECK(mount_of(app, "nginx-conf") == "/etc/nginx/conf.d");
  const auto& svc = conf["services"][0];
  for (const auto& p : svc["probes"]) CHECK_THAT(p["url"].get<std::string>(), Catch::StartsWith("http://127.0.0.1:" + app_port + "/"));

  // The release link lastgood switches is the one nginx serves, on a volume both mount, and
  // writable only by lastgood.
  const std::string path = svc["deployment"]["path"];
  REQUIRE(std::regex_search(nginx_conf, m, std::regex(R"(root\s+([^;]+);)")));
  CHECK(m[1] == path + "/current");
  bool app_ro = false, lg_ro = true;
  CHECK(mount_of(app, "site", &app_ro) == path);
  CHECK(mount_of(lg, "site", &lg_ro) == path);
  CHECK(app_ro);
  CHECK_FALSE(lg_ro);
  CHECK(mount_of(lg, "state") == conf["state_dir"]);

  // Every token the config names is in the container's environment.
  for (const auto& a : conf["approvers"]) {
    bool found = false;
    for (const auto& e : lg["env"]) found = found || e["name"] == a["token_env"];
    CHECK(found);
  }
}
