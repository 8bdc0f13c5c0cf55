#pragma once
// Helpers for integration tests: temp dirs, free ports, child processes stopped by PID, a real
// nginx (plain and TLS) with a CA made by openssl, and polling instead of sleeping.
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <atomic>
#include <memory>
#include <thread>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <nlohmann/json.hpp>

#include "watchdog/state/ledger.hpp"
#include "watchdog/api/server.hpp"

namespace testing {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path;
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  fs::path operator/(const std::string& s) const { return path / s; }
};

// A port for a server the test starts that must be told its port before it binds (nginx, sshd,
// Verdaccio, Alertmanager): below the ephemeral range, free now, never handed out twice. lastgood
// itself is never given one: it binds port 0 (Lastgood::port()).
unsigned short free_port();
bool port_open(unsigned short port);
// Polls `cond` every 10ms until it holds or `timeout` passes; returns whether it held.
bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout);
void write_file(const fs::path& p, const std::string& text);
std::string read_file(const fs::path& p);
// One HTTP/1.1 request to 127.0.0.1:port (5 s deadline). status 0 means no answer; body then
// holds the error.
struct HttpReply {
  int status = 0;
  std::string body;
  std::string content_type;
};
HttpReply http_call(unsigned short port, const std::string& method, const std::string& target, const std::string& token = "",
                    const std::string& body = "");
// One request as raw bytes (headers chosen by the test) to 127.0.0.1:port; the whole reply as
// raw bytes, read until the server closes.
std::string raw_exchange(unsigned short port, const std::string& request);
// Prints the file (a daemon's log) to stderr when its scope ends by a failed REQUIRE or another
// exception, as it is then: INFO(read_file(...)) would show it as it was when INFO ran.
struct DumpOnFailure {
  fs::path path;
  ~DumpOnFailure();
};
// Whether the ledger at `path` holds an entry of `type` whose data mentions `text`.
bool ledger_has(const fs::path& path, const std::string& type, const std::string& text = "");
// Runs argv to completion, capturing stdout+stderr; returns the exit status (-1 on signal).
int run_command(const std::vector<std::string>& argv, std::string* output = nullptr);

// A raw TCP server on 127.0.0.1 (free port) for tests that script a peer byte by byte: a thread
// accepts connections one at a time and hands each to `serve` (which runs on that thread and may
// keep the socket open past its return with hold()). Stopped and joined on destruction.
class RawServer {
 public:
  using Socket = std::shared_ptr<boost::asio::ip::tcp::socket>;
  explicit RawServer(std::function<void(RawServer&, Socket)> serve);
  ~RawServer();
  RawServer(const RawServer&) = delete;
  RawServer& operator=(const RawServer&) = delete;
  unsigned short port() const { return port_; }
  void hold(Socket s) { held_.push_back(std::move(s)); }  // closed when the server stops

 private:
  std::function<void(RawServer&, Socket)> serve_;
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  unsigned short port_ = 0;
  std::atomic<bool> stop_{false};
  std::vector<Socket> held_;
  std::thread thread_;
};

// lastgood's own HTTP server (watchdog::Server) on 127.0.0.1, a free port, run on a thread of its
// own: a fake remote API for tests. `handler` is called on that thread. Stopped and joined on
// destruction, so declare it after whatever the handler uses.
class HttpTestServer {
 public:
  explicit HttpTestServer(lastgood::watchdog::Server::Handler handler);
  ~HttpTestServer();
  HttpTestServer(const HttpTestServer&) = delete;
  HttpTestServer& operator=(const HttpTestServer&) = delete;
  unsigned short port() const { return port_; }

 private:
  boost::asio::io_context ioc_;
  std::unique_ptr<lastgood::watchdog::Server> server_;
  unsigned short port_ = 0;
  std::thread thread_;
};

class Process {
 public:
  // Starts argv in its own process group; stdout/stderr go to log_file.
  Process(std::vector<std::string> argv, const fs::path& log_file, std::map<std::string, std::string> env = {});
  ~Process();
  pid_t pid() const { return pid_; }
  bool running();
  // SIGTERM, then waits up to `grace` before SIGKILL. Returns the exit status, or -signal.
  int stop(std::chrono::milliseconds grace = std::chrono::seconds(5));
  // Sends `sig` and waits up to `timeout` for the exit; nullopt when it is still running.
  std::optional<int> signal_and_wait(int sig, std::chrono::milliseconds timeout);

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// A CA and a server certificate for `localhost` (DNS name only), made with the openssl CLI.
struct TestPki {
  fs::path ca_cert, server_cert, server_key, other_ca_cert;
  explicit TestPki(const fs::path& dir);
};

// nginx on 127.0.0.1: plain HTTP on `port`, HTTPS on `tls_port` when pki is given.
// Locations: / (index.html), /status/500, /slow? no; the access log records $connection.
class Nginx {
 public:
  // `site_root`: serve this folder (e.g. a release `current` symlink) instead of a fixed page.
  Nginx(const fs::path& dir, const TestPki* pki = nullptr, std::optional<fs::path> site_root = std::nullopt);
  ~Nginx();
  unsigned short port = 0, tls_port = 0;
  fs::path root, access_log;
  std::string url(const std::string& path = "/") const;
  std::string tls_url(const std::string& host, const std::string& path = "/") const;
  // The $connection serial of every logged request, in order.
  std::vector<std::string> logged_connections() const;

 private:
  fs::path dir_;
  std::unique_ptr<Process> proc_;
};

// OpenSSH's sshd on 127.0.0.1 with its own host key, accepting `client_key` for the current user.
class Sshd {
 public:
  explicit Sshd(const fs::path& dir);
  ~Sshd();
  unsigned short port = 0;
  fs::path client_key;         // private key (ed25519) for the current user
  fs::path known_hosts;        // "[127.0.0.1]:PORT ssh-ed25519 ..." with the real host key
  fs::path wrong_known_hosts;  // the same host with another key
  std::string user;

 private:
  std::unique_ptr<Process> proc_;
};

// Verdaccio 6.8 (a real npm registry) from tests/fixtures/verdaccio/node_modules, offline, with
// one user whose token publishes. npm() runs the npm CLI against it.
class Verdaccio {
 public:
  explicit Verdaccio(const fs::path& dir);
  ~Verdaccio();
  unsigned short port = 0;
  std::string token;
  fs::path storage, npmrc;
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port) + "/"; }
  // Publishes name@version (a tiny package) with the npm CLI.
  void publish(const std::string& name, const std::string& version);
  // `npm view NAME FIELD --json`, parsed.
  std::string view(const std::string& name, const std::string& field);

 private:
  fs::path dir_;
  std::unique_ptr<Process> proc_;
};

// A real etcd 3.4 (Debian's etcd-server) on 127.0.0.1: `members` members of one cluster (ha.md's
// test timings: heartbeat 100 ms, election 1 s), ready when every member's /health says so.
// stop(i) / cont(i) send SIGSTOP / SIGCONT to member i (taking the quorum away and back).
class Etcd {
 public:
  Etcd(const fs::path& dir, int members = 1);
  ~Etcd();
  std::vector<unsigned short> client_ports;
  std::vector<std::string> endpoints() const;
  void stop(int member);
  void cont(int member);

 private:
  std::vector<std::unique_ptr<Process>> procs_;
};

// A release folder: root/releases/{names} with an index.html each, and root/current -> releases/first.
// A release whose name starts with "bad" serves a page without a <title>.
void make_releases(const fs::path& root, const std::vector<std::string>& names);
void switch_current(const fs::path& root, const std::string& release);
std::string current_release(const fs::path& root);

// The lastgood binary run by a test, on a config of its own and a state dir of its own: started
// and restarted by the test, its ledger and logs read back, its logs printed when the test fails.
// Its API listens on a port the kernel picks ("127.0.0.1:0", unless the config says otherwise),
// read back from its log by port(): no port is chosen first and raced for.
struct Lastgood {
  // The whole config, as given (listen and state_dir filled in when absent).
  struct Config {
    nlohmann::json json;
  };
  TempDir& dir;
  fs::path state;
  fs::path config;
  std::unique_ptr<Process> proc;
  int runs = 0;
  std::vector<std::string> prefix;                   // run the binary under this (e.g. prlimit --nofile=256:256 --)
  std::vector<std::string> args{"--log-level", "debug"};  // after `run -c CONFIG`
  std::string hmac_key;                              // the key of a keyed ledger (ledger.hmac_key_file), for ledger()

  // One service, P0 auto-approved; `extra` is merged into the config's top level (e.g. another
  // state_dir, authority, approvers, notify).
  Lastgood(TempDir& d, nlohmann::json service, nlohmann::json extra = nlohmann::json::object());
  Lastgood(TempDir& d, Config whole);
  ~Lastgood();
  Lastgood(const Lastgood&) = delete;
  Lastgood& operator=(const Lastgood&) = delete;

  void start(std::map<std::string, std::string> env = {});
  // The API's port in this run (waits up to 20 s for it to listen; 0 if it never did).
  unsigned short port();
  bool ready();
  std::vector<lastgood::watchdog::LedgerEntry> ledger() const;
  // Whether the ledger holds an entry of `type` whose data mentions `text`.
  bool has(const std::string& type, const std::string& text = "") const;
  std::string log() const;
  fs::path log_file(int run) const;
  // Waits until the ledger holds an entry of `type` satisfying `pred`, after the first `skip` entries.
  bool wait_for(const std::string& type, std::function<bool(const nlohmann::json&)> pred = {},
                std::chrono::seconds t = std::chrono::seconds(20), size_t skip = 0);
  int count(const std::string& type) const;
  // The `field` of the last ledger entry of `type` ("" when there is none), e.g. a proposal's id.
  std::string last(const std::string& type, const std::string& field) const;
  // The events of the incident record of the last action, once the record's status is `status`
  // (waits up to 5 s; empty when it never is).
  std::vector<std::string> incident_events(const std::string& status = "verified") const;
  // `lastgood ledger verify` passes on its ledger.
  bool ledger_verifies() const;

 private:
  unsigned short port_ = 0;
};

// The scenario most rollback tests start from: releases under dir/app (current -> the first; a
// "bad*" release serves a page without <title>), served by a real nginx.
struct Site {
  fs::path root;
  std::unique_ptr<Nginx> nginx;
  explicit Site(TempDir& dir, const std::vector<std::string>& releases = {"v1", "bad2"});
  std::string url() const { return nginx->url("/"); }
  // The local_symlink deployment of root, with `extra` keys.
  nlohmann::json local_symlink(nlohmann::json extra = nlohmann::json::object()) const;
};

// Service "app": probe "home" of `url` every 200 ms expecting "<title>", trigger "down" after
// `failures` failures in a row, the rollback per `mode`.
struct App {
  int failures = 2;
  std::string severity = "P0";
  std::string mode = "auto";
  std::string timeout = "150ms";
  std::string good_after = "1s";
  std::string verify_within = "10s";
  std::string cooldown = "";  // empty: the default
  nlohmann::json extra_probes = nlohmann::json::array();
};
nlohmann::json app_service(const std::string& url, nlohmann::json deployment, const App& options);
inline nlohmann::json app_service(const std::string& url, nlohmann::json deployment) { return app_service(url, std::move(deployment), App{}); }
// The app of the fault and crash tests: three failures in a row, a slower probe timeout, a longer
// verification, a 10-minute cooldown.
nlohmann::json strict_app(const std::string& url, nlohmann::json deployment, nlohmann::json extra_probes = nlohmann::json::array(),
                          std::string mode = "auto");
// One approver, alice (role oncall, token from LG_TEST_TOKEN), who alone may decide a P0; no P0
// rollback runs without her.
nlohmann::json alice_approves_p0();
// The value of the first series of a /metrics text that starts with `series` (name and labels), or -1.
double metric(const std::string& metrics, const std::string& series);

// A ledger predicate: the entry's data names release `id`.
inline auto release_is(const std::string& id) {
  return [id](const nlohmann::json& d) { return d.value("release", "") == id; };
}

// Runs one awaitable on a fresh io_context and returns its value.
template <typename T>
T run_sync(boost::asio::io_context& ioc, boost::asio::awaitable<T> aw) {
  std::optional<T> out;
  std::exception_ptr err;
  boost::asio::co_spawn(ioc, std::move(aw), [&](std::exception_ptr e, T v) {
    err = e;
    if (!e) out = std::move(v);
  });
  ioc.restart();
  ioc.run();
  if (err) std::rethrow_exception(err);
  return std::move(*out);
}

}  // namespace testing
