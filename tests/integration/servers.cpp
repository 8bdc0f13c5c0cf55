// The real servers integration tests start on 127.0.0.1: nginx (plain and TLS, with a CA made by
// openssl), OpenSSH's sshd, Verdaccio; and release folders for them to serve.
#include "fixtures.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <exception>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "watchdog/state/ledger.hpp"

namespace testing {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;


TestPki::TestPki(const fs::path& dir) {
  ca_cert = dir / "ca.pem";
  server_cert = dir / "server.pem";
  server_key = dir / "server.key";
  other_ca_cert = dir / "other-ca.pem";
  auto sh = [](const std::vector<std::string>& argv) {
    std::string out;
    if (run_command(argv, &out) != 0) throw std::runtime_error("openssl failed: " + out);
  };
  const std::string d = dir.string();
  sh({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj",
      "/CN=lastgood test CA", "-keyout", d + "/ca.key", "-out", ca_cert.string()});
  sh({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30", "-subj",
      "/CN=some other CA", "-keyout", d + "/other-ca.key", "-out", other_ca_cert.string()});
  sh({"openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost", "-keyout",
      server_key.string(), "-out", d + "/server.csr"});
  write_file(dir / "san.ext", "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n");
  sh({"openssl", "x509", "-req", "-in", d + "/server.csr", "-CA", ca_cert.string(), "-CAkey", d + "/ca.key", "-CAcreateserial",
      "-days", "20", "-extfile", d + "/san.ext", "-out", server_cert.string()});
  fs::permissions(server_key, fs::perms::owner_read | fs::perms::owner_write | fs::perms::others_read | fs::perms::group_read);
}

Nginx::Nginx(const fs::path& dir, const TestPki* pki, std::optional<fs::path> site_root) : dir_(dir) {
  root = site_root ? *site_root : dir / "site";
  access_log = dir / "access.log";
  if (!site_root) fs::create_directories(root / "status");
  for (const char* t : {"client_body", "proxy", "fastcgi", "uwsgi", "scgi"}) fs::create_directories(dir / "tmp" / t);
  if (!site_root) {
    write_file(root / "index.html", "<!doctype html><title>lastgood test</title><p>hello</p>\n");
    write_file(root / "health.json", R"({"status":"ok","version":"1.2.3"})");
  }
  port = free_port();
  std::string tls;
  if (pki) {
    tls_port = free_port();
    tls = "    server {\n      listen 127.0.0.1:" + std::to_string(tls_port) + " ssl;\n      server_name localhost;\n" +
          "      ssl_certificate " + pki->server_cert.string() + ";\n      ssl_certificate_key " + pki->server_key.string() +
          ";\n      root " + root.string() + ";\n" +
          "      location = /to-plain { return 302 http://127.0.0.1:" + std::to_string(port) + "/index.html; }\n" +
          "      location = /once { keepalive_timeout 0; try_files /index.html =404; }\n    }\n";
  }
  const std::string d = dir.string();
  std::string conf = "daemon off;\nworker_processes 1;\npid " + d + "/nginx.pid;\nerror_log " + d +
                     "/error.log;\nevents { worker_connections 256; }\nhttp {\n"
                     "  client_body_temp_path " + d + "/tmp/client_body;\n  proxy_temp_path " + d + "/tmp/proxy;\n"
                     "  fastcgi_temp_path " + d + "/tmp/fastcgi;\n  uwsgi_temp_path " + d + "/tmp/uwsgi;\n"
                     "  scgi_temp_path " + d + "/tmp/scgi;\n"
                     "  log_format conn '$connection $connection_requests $status \"$request\" key=$http_x_probe_key conn=$http_connection';\n"
                     "  access_log " + access_log.string() + " conn;\n"
                     "  keepalive_timeout 60s;\n  keepalive_requests 10000;\n"
                     "  types { text/html html; application/json json; }\n"
                     "  server {\n    listen 127.0.0.1:" + std::to_string(port) + ";\n    root " + root.string() + ";\n"
                     "    location = /status/500 { return 500 'broken\\n'; }\n"
                     "    location = /redirect { return 302 /index.html; }\n"
                     "    location = /elsewhere { return 302 http://localhost:" + std::to_string(port) + "/index.html; }\n"
                     "  }\n" + tls + "}\n";
  write_file(dir / "nginx.conf", conf);
  proc_ = std::make_unique<Process>(std::vector<std::string>{"nginx", "-c", d + "/nginx.conf", "-p", d + "/", "-e", d + "/error.log"},
                                    dir / "nginx.out");
  bool up = wait_until([&] { return port_open(port) && (!pki || port_open(tls_port)); }, std::chrono::seconds(10));
  if (!up) throw std::runtime_error("nginx did not start: " + read_file(dir / "error.log") + read_file(dir / "nginx.out"));
}

Nginx::~Nginx() { proc_->stop(); }

std::string Nginx::url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port) + path; }
std::string Nginx::tls_url(const std::string& host, const std::string& path) const {
  return "https://" + host + ":" + std::to_string(tls_port) + path;
}

std::vector<std::string> Nginx::logged_connections() const {
  std::vector<std::string> out;
  std::istringstream in(read_file(access_log));
  std::string line;
  while (std::getline(in, line)) out.push_back(line.substr(0, line.find(' ')));
  return out;
}

Sshd::Sshd(const fs::path& dir) {
  fs::create_directories("/run/sshd");
  fs::create_directories(dir / "keys");
  auto sh = [](const std::vector<std::string>& argv) {
    std::string out;
    if (run_command(argv, &out) != 0) throw std::runtime_error("sshd fixture: " + argv[0] + " failed: " + out);
  };
  const std::string d = dir.string();
  sh({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d + "/host_ed25519_key"});
  sh({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d + "/other_host_key"});
  sh({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d + "/client_key"});
  client_key = dir / "client_key";
  const char* u = std::getenv("USER");
  std::string out;
  run_command({"id", "-un"}, &out);
  user = out.substr(0, out.find('\n'));
  if (user.empty() && u) user = u;
  write_file(dir / "keys" / user, read_file(dir / "client_key.pub"));
  fs::permissions(dir / "keys" / user, fs::perms::owner_read | fs::perms::owner_write);
  port = free_port();
  write_file(dir / "sshd_config", "Port " + std::to_string(port) + "\nListenAddress 127.0.0.1\nHostKey " + d +
                                      "/host_ed25519_key\nPidFile " + d + "/sshd.pid\nAuthorizedKeysFile " + d +
                                      "/keys/%u\nPubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                                      "UsePAM no\nPermitRootLogin prohibit-password\nStrictModes no\n");
  auto pub = [&](const std::string& f) {
    std::string k = read_file(dir / f);
    k = k.substr(0, k.find(' ', k.find(' ') + 1));  // "ssh-ed25519 AAAA..."
    return "[127.0.0.1]:" + std::to_string(port) + " " + k + "\n";
  };
  known_hosts = dir / "known_hosts";
  wrong_known_hosts = dir / "wrong_known_hosts";
  write_file(known_hosts, pub("host_ed25519_key.pub"));
  write_file(wrong_known_hosts, pub("other_host_key.pub"));
  sh({"/usr/sbin/sshd", "-t", "-f", d + "/sshd_config"});
  proc_ = std::make_unique<Process>(std::vector<std::string>{"/usr/sbin/sshd", "-D", "-e", "-f", d + "/sshd_config"}, dir / "sshd.log");
  if (!wait_until([&] { return port_open(port); }, std::chrono::seconds(10)))
    throw std::runtime_error("sshd did not start: " + read_file(dir / "sshd.log"));
}

Sshd::~Sshd() { proc_->stop(); }

Verdaccio::Verdaccio(const fs::path& dir) : dir_(dir) {
  const fs::path modules = fs::path(LASTGOOD_SOURCE_DIR) / "scripts/npm/verdaccio/node_modules/.bin/verdaccio";
  if (!fs::exists(modules)) throw std::runtime_error("Verdaccio is not installed: run scripts/install-deps (npm install in scripts/npm/verdaccio)");
  fs::create_directories(dir);
  storage = dir / "storage";
  port = free_port();
  write_file(dir / "config.yaml", "storage: " + storage.string() + "\nlisten: 127.0.0.1:" + std::to_string(port) +
                                      "\nauth:\n  htpasswd:\n    file: " + (dir / "htpasswd").string() +
                                      "\n    max_users: 100\nuplinks: {}\npackages:\n"
                                      // locked-*: nobody may unpublish (a registry's refusal, for the fallback to deprecate)
                                      "  'locked-*':\n    access: $all\n    publish: $authenticated\n    unpublish: no-such-user\n"
                                      "  '**':\n    access: $all\n    publish: $authenticated\n"
                                      "    unpublish: $authenticated\nweb:\n  enable: false\nlog: {type: stdout, format: pretty, level: warn}\n");
  proc_ = std::make_unique<Process>(std::vector<std::string>{"node", modules.string(), "--config", (dir / "config.yaml").string()},
                                    dir / "verdaccio.log");
  if (!wait_until([&] { return port_open(port); }, std::chrono::seconds(30)))
    throw std::runtime_error("verdaccio did not start: " + read_file(dir / "verdaccio.log"));
  std::string out;
  run_command({"sh", "-c",
               "curl -s -X PUT -H 'content-type: application/json' -d '{\"name\":\"tester\",\"password\":\"tester-pass\",\"type\":\"user\"}' " +
                   url() + "-/user/org.couchdb.user:tester"},
              &out);
  auto answer = nlohmann::json::parse(out, nullptr, false);
  if (answer.is_discarded() || !answer.contains("token")) throw std::runtime_error("verdaccio: no token: " + out);
  token = answer["token"].get<std::string>();
  npmrc = dir / "npmrc";
  write_file(npmrc, "//127.0.0.1:" + std::to_string(port) + "/:_authToken=" + token + "\nregistry=" + url() + "\n");
}

Verdaccio::~Verdaccio() { proc_->stop(); }

void Verdaccio::publish(const std::string& name, const std::string& version) {
  const fs::path pkg = dir_ / ("pkg-" + version);
  fs::create_directories(pkg);
  write_file(pkg / "package.json", "{\"name\":\"" + name + "\",\"version\":\"" + version + "\",\"main\":\"index.js\",\"license\":\"MIT\"}\n");
  write_file(pkg / "index.js", "module.exports = '" + version + "';\n");
  std::string out;
  int rc = run_command({"sh", "-c", "cd " + pkg.string() + " && npm publish --userconfig " + npmrc.string() + " --registry " + url() +
                                        " --no-audit --no-fund 2>&1"},
                       &out);
  if (rc != 0) throw std::runtime_error("npm publish " + version + " failed: " + out);
}

std::string Verdaccio::view(const std::string& name, const std::string& field) {
  std::string out;
  run_command({"sh", "-c", "npm view " + name + " " + field + " --json --userconfig " + npmrc.string() + " --registry " + url() + " 2>/dev/null"},
              &out);
  return out;
}

void make_releases(const fs::path& root, const std::vector<std::string>& names) {
  for (const auto& n : names) {
    fs::create_directories(root / "releases" / n);
    const bool bad = n.rfind("bad", 0) == 0;
    write_file(root / "releases" / n / "index.html",
               bad ? "<!doctype html><p>release " + n + ": broken</p>\n" : "<!doctype html><title>release " + n + "</title><p>ok</p>\n");
  }
  switch_current(root, names.front());
}

void switch_current(const fs::path& root, const std::string& release) {
  fs::path tmp = root / "current.tmp.test";
  std::error_code ec;
  fs::remove(tmp, ec);
  fs::create_symlink(fs::path("releases") / release, tmp);
  fs::rename(tmp, root / "current");
}

std::string current_release(const fs::path& root) {
  std::error_code ec;
  return fs::read_symlink(root / "current", ec).filename().string();
}

Etcd::Etcd(const fs::path& dir, int members) {
  std::vector<unsigned short> peer_ports;
  std::string cluster;
  for (int i = 0; i < members; ++i) {
    client_ports.push_back(free_port());
    peer_ports.push_back(free_port());
    cluster += (i ? "," : "") + std::string("n") + std::to_string(i) + "=http://127.0.0.1:" + std::to_string(peer_ports.back());
  }
  const std::string token = "lg-" + dir.filename().string() + "-" + std::to_string(::getpid());
  for (int i = 0; i < members; ++i) {
    const std::string n = "n" + std::to_string(i);
    const std::string client = "http://127.0.0.1:" + std::to_string(client_ports[static_cast<size_t>(i)]);
    const std::string peer = "http://127.0.0.1:" + std::to_string(peer_ports[static_cast<size_t>(i)]);
    fs::create_directories(dir / n);
    procs_.push_back(std::make_unique<Process>(
        std::vector<std::string>{"etcd", "--name", n, "--data-dir", (dir / n / "data").string(), "--listen-client-urls", client,
                                 "--advertise-client-urls", client, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                                 "--initial-cluster", cluster, "--initial-cluster-token", token, "--initial-cluster-state", "new",
                                 "--heartbeat-interval", "100", "--election-timeout", "1000"},
        dir / n / "log"));
  }
  for (int i = 0; i < members; ++i) {
    const auto port = client_ports[static_cast<size_t>(i)];
    if (!wait_until([&] { return http_call(port, "GET", "/health").body.find("\"health\":\"true\"") != std::string::npos; },
                    std::chrono::seconds(30)))
      throw std::runtime_error("etcd member " + std::to_string(i) + " did not become healthy: " + read_file(dir / ("n" + std::to_string(i)) / "log"));
  }
}

Etcd::~Etcd() {
  for (size_t i = 0; i < procs_.size(); ++i) ::kill(procs_[i]->pid(), SIGCONT);  // a stopped member cannot exit
  for (auto& p : procs_) p->stop();
}

std::vector<std::string> Etcd::endpoints() const {
  std::vector<std::string> out;
  for (auto p : client_ports) out.push_back("http://127.0.0.1:" + std::to_string(p));
  return out;
}

// Returns once the member is stopped, not when the signal is sent: on a loaded machine a member
// could otherwise still answer (a write then commits with a "stopped" majority).
void Etcd::stop(int member) {
  const pid_t pid = procs_[static_cast<size_t>(member)]->pid();
  ::kill(pid, SIGSTOP);
  // Every thread (etcd is Go: many), each in state T.
  wait_until(
      [&] {
        std::error_code ec;
        for (const auto& t : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
          const std::string s = read_file(t.path() / "stat");
          const auto paren = s.rfind(')');
          if (paren == std::string::npos || paren + 2 >= s.size() || s[paren + 2] != 'T') return false;
        }
        return !ec;
      },
      std::chrono::seconds(5));
}
void Etcd::cont(int member) { ::kill(procs_[static_cast<size_t>(member)]->pid(), SIGCONT); }

}  // namespace testing
