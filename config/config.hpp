#pragma once
// The typed, immutable configuration of lastgood (shape: ../docs/configuration.md).
// Built once by load(); every part of the program reads it through a const reference.
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/duration.hpp"
#include "config/secret.hpp"
#include "policy/spec.hpp"

namespace lastgood::config {

// ---- probes --------------------------------------------------------------------------------

// An accepted HTTP status: a closed range (a single code is lo == hi).
struct StatusRange {
  int lo = 200;
  int hi = 299;
  bool contains(int s) const { return s >= lo && s <= hi; }
};

struct HttpExpect {
  std::vector<StatusRange> status{{200, 299}};
  std::optional<std::string> body_contains;
  std::optional<std::string> body_matches;            // RE2 syntax (linear time), compiled by the probe
  std::map<std::string, std::string> header;          // header name -> exact value
  std::map<std::string, nlohmann::json> json;         // JSON pointer -> expected value
  std::optional<Duration> max_latency;
  std::optional<Duration> cert_valid_for;
};

struct HttpProbe {
  std::string url;
  std::string method = "GET";
  std::map<std::string, std::string> headers;
  std::optional<std::string> body;
  int follow_redirects = 0;                            // how many redirects to follow; 0 = none
  bool redirect_to_http = false;                       // follow a redirect from https:// to http://
  std::optional<std::string> ca_file;                  // PEM bundle; default: system CA store
  bool insecure_skip_verify = false;
  std::size_t max_body_bytes = 1024 * 1024;
  HttpExpect expect;
};

struct TcpProbe {
  std::string host;
  std::string port;
  std::optional<std::string> send;
  std::optional<std::string> expect_reply_prefix;
  std::optional<Duration> max_latency;
};

struct NpmRegistryProbe {
  std::string registry = "https://registry.npmjs.org/";
  std::string package;
  std::string tag = "latest";
  bool check_deprecated = false;
  std::optional<Secret> token;                          // for private registries
  std::size_t max_tarball_bytes = 64 * 1024 * 1024;
};

struct Probe {
  std::string name;
  std::string kind;                                     // "http" | "tcp" | "npm_registry"
  Duration interval{10'000};
  Duration timeout{2'000};
  bool reference = false;                               // checks the watcher's own reach
  std::variant<HttpProbe, TcpProbe, NpmRegistryProbe> spec;
};

// ---- triggers, rollback, authority: policy's own plain types ---------------------------------

using policy::Authority;
using policy::Rollback;
using policy::Rule;
using policy::Severity;
using policy::Trigger;
using policy::Verify;
using policy::to_string;

// ---- deployments ---------------------------------------------------------------------------

struct Deployment {
  std::string kind;  // local_symlink | ssh_symlink | firebase_hosting | npm_package | http_api | command
  Duration observe_interval{30'000};
  nlohmann::json spec;  // kind-specific keys, shape-checked at load; typed by the action that uses them
  std::map<std::string, Secret> secrets;  // e.g. "token" for token_env/token_file
  std::vector<std::string> migration_releases;  // releases carrying a data migration: humans only
};

struct Service {
  std::string name;
  std::vector<Probe> probes;
  std::optional<Deployment> deployment;
  std::vector<Trigger> triggers;
  Rollback rollback;
  bool shadow = false;  // every trigger of the service detects only
};

// ---- people and notifications --------------------------------------------------------------

struct Approver {
  std::string name;
  std::vector<std::string> roles;
  Secret token;
};

struct Notify {
  std::string kind;                                      // webhook | slack
  Secret url;                                            // url given inline counts as non-secret
  std::vector<std::string> events;                       // empty = all
};

struct Alertmanager {
  std::optional<Secret> token;
  std::string service_label = "service";
  std::string severity_label = "severity";
  std::map<std::string, Severity> severity_map{{"critical", Severity::P0}, {"error", Severity::P1}, {"warning", Severity::P2}};
};

// Limits of lastgood's own HTTP server ("api" block).
struct Api {
  int max_connections = 0;          // 0: an eighth of the open-files limit, between 16 and 1024
  Duration idle_timeout{10'000};    // a client must send each whole request within this
  // Host names (besides localhost and IP literals) the API answers to: a browser page on another
  // name (DNS rebinding) is refused.
  std::vector<std::string> allowed_hosts;
  // Addresses of reverse proxies whose X-Forwarded-For names the client (for rate limits and the
  // ledger); from any other address the header is ignored.
  std::vector<std::string> trusted_proxies;
};

// The "ledger" block: with hmac_key (hmac_key_file or hmac_key_env), every entry's hash is an
// HMAC-SHA256 under it (design.md, Ledger).
struct LedgerOptions {
  // A short key can be guessed offline from any entry.
  static constexpr std::size_t kMinKeyBytes = 16;
  std::optional<Secret> hmac_key;
};

struct Config {
  std::string source;                                    // the file it came from
  std::string listen = "127.0.0.1:9464";
  Api api;
  std::string state_dir = "/var/lib/lastgood";
  LedgerOptions ledger;
  std::vector<Approver> approvers;
  std::map<Severity, Authority> authority;
  std::vector<Notify> notify;
  std::optional<Alertmanager> alertmanager;
  std::vector<Service> services;
};

// ---- loading -------------------------------------------------------------------------------

struct Problem {
  std::string file;
  std::string pointer;  // JSON pointer, "" for the whole document
  std::string message;  // what was expected; never contains a secret's value
  std::string to_string() const;
};

struct LoadOptions {
  bool resolve_secrets = true;  // read every *_env / *_file now and report missing ones as problems
};

struct LoadResult {
  std::shared_ptr<const Config> config;  // set when problems is empty
  std::vector<Problem> problems;
};

LoadResult load_file(const std::string& path, LoadOptions opts = {});
LoadResult load_text(const std::string& text, const std::string& source_name, LoadOptions opts = {});

// The kinds of probe and deployment the config accepts (config/kinds.cpp), in the order the
// docs list them; probes/ and actions/ have a factory for each.
const std::vector<std::string>& probe_kinds();
const std::vector<std::string>& deployment_kinds();

}  // namespace lastgood::config
