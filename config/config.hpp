#pragma once
// The typed, immutable configuration of lastgood (shape: ../docs/configuration.md).
// Built once by load(); every part of the program reads it through a const reference.
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/duration.hpp"
#include "config/kind.hpp"
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

struct Probe {
  std::string name;
  std::string kind;                                     // a name from Kinds::probes
  Duration interval{10'000};
  Duration timeout{2'000};
  bool reference = false;                               // checks the watcher's own reach
  std::shared_ptr<const KindSpec> spec;                 // the kind's own keys (probes/<kind>.hpp)
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
  std::string kind;  // a name from Kinds::deployments
  Duration observe_interval{30'000};
  std::shared_ptr<const KindSpec> spec;  // the kind's own keys (actions/<kind>.hpp)
  std::vector<std::string> migration_releases;  // releases carrying a data migration: humans only
};

struct Service {
  std::string name;
  std::string public_name = {};  // what customers call it; set = externally visible
  std::vector<Probe> probes;
  std::optional<Deployment> deployment;
  policy::TriggerList triggers;  // shared with the service's policy (policy::ServiceSpec)
  Rollback rollback;
  bool shadow = false;  // every trigger of the service detects only
  // Hashes of the service's JSON, for a reload: `fingerprint` of all of it (unchanged: kept as
  // it is), `evidence_fingerprint` of what its windows depend on (probes and triggers; unchanged:
  // the windows are kept while the rest is applied).
  std::size_t fingerprint = 0, evidence_fingerprint = 0;
  bool has_secrets = false;  // some key of it is *_env or *_file: a reload reads them again
};

// ---- people and notifications --------------------------------------------------------------

struct Approver {
  std::string name;
  std::vector<std::string> roles;
  Secret token;
};

struct Notify {
  std::string kind;                                      // webhook | slack | pagerduty
  Secret url;                                            // url given inline counts as non-secret
  std::optional<Secret> routing_key;                     // pagerduty: the integration's routing key
  std::vector<std::string> events;                       // empty = all
  std::vector<Severity> severities;                      // empty = all
  std::vector<std::string> services;                     // empty = all
  // "team" (everything) or "customers": plain sentences about impact and restoration only, for
  // services with a public_name, when a rollback was carried out and when it was verified.
  std::string audience = "team";
};

// A maintenance window: like a silence, from the config.
struct Maintenance {
  std::vector<std::string> services;
  std::chrono::system_clock::time_point start, end;
  std::string comment;
};

// The public status page (/status, /api/v1/status): what it is called and which services it
// lists, each by its public_name (a service without one is not for customers' eyes).
struct StatusPage {
  std::string title = "Status";
  std::vector<std::string> services;  // service names, in the order shown
  Duration history{30LL * 24 * 3600 * 1000};  // incidents this far back are listed
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
  // Segments: once the active file holds this many entries, it is sealed and the next one begins
  // with a snapshot of the replayed state, so a start reads one segment, not the history (0: never).
  std::uint64_t segment_entries = 200'000;
};

// The "ha" block (../docs/operations.md, "Running replicas"; design: ha.md): several replicas
// coordinated through etcd 3.4's JSON gateway. Absent: one replica, which always may act.
struct Ha {
  std::vector<std::string> etcd;       // endpoints, "http://host:port" or "https://..."; tried in turn
  std::string cluster;                 // the key prefix /lastgood/<cluster>/
  std::string replica;                 // this replica's id, unique in the cluster
  int shards = 1;                      // 1: active/standby; S: services spread over replicas
  Duration lease{15'000};              // etcd lease TTL
  Duration renew_deadline{10'000};     // no successful keepalive for this long: stop acting
  Duration retry{2'000};               // between campaigns, and the rank step of the rendezvous order
  Duration retention{7LL * 24 * 3600 * 1000};  // finished actions and closed proposals older than this leave etcd
  std::optional<std::string> ca_file, cert_file, key_file;  // TLS to etcd
  std::optional<std::string> user;     // etcd auth
  std::optional<Secret> password;
};

struct Config {
  std::string source;                                    // the file it came from
  // What a reload cannot change (listen, state_dir, ledger, ha, api): their JSON, to compare.
  std::string restart_only;
  std::string listen = "127.0.0.1:9464";
  std::string external_url;                              // the base of every link in notices ("" : the listen address)
  Api api;
  std::string state_dir = "/var/lib/lastgood";  // when not given: default_state_dir()
  LedgerOptions ledger;
  std::vector<Approver> approvers;
  std::map<Severity, Authority> authority;
  std::vector<Notify> notify;
  std::vector<Maintenance> maintenance;
  std::optional<StatusPage> status_page;
  std::optional<Alertmanager> alertmanager;
  std::optional<Ha> ha;
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

// `kinds`: the probe and deployment kinds accepted (lastgood::kinds() in the program).
LoadResult load_file(const std::string& path, const Kinds& kinds, LoadOptions opts = {});
LoadResult load_text(const std::string& text, const std::string& source_name, const Kinds& kinds, LoadOptions opts = {});

// The state_dir used when the config names none: /var/lib/lastgood for root, else
// $XDG_STATE_HOME/lastgood or ~/.local/state/lastgood.
std::string default_state_dir();
std::string default_state_dir(unsigned euid, const char* xdg_state_home, const char* home);

}  // namespace lastgood::config
