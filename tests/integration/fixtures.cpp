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

HttpReply http_call(unsigned short port, const std::string& method, const std::string& target, const std::string& token,
                    const std::string& body) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  // Asynchronous, so that the 5 s deadline holds (beast's synchronous calls ignore expires_after):
  // a server that accepts and never answers must not hang the test.
  asio::io_context ioc;
  beast::tcp_stream s(ioc);
  s.expires_after(std::chrono::seconds(5));
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "127.0.0.1");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  req.body() = body;
  req.prepare_payload();
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  boost::system::error_code ec = asio::error::timed_out;
  s.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), [&](boost::system::error_code cec) {
    if (cec) {
      ec = cec;
      return;
    }
    http::async_write(s, req, [&](boost::system::error_code wec, std::size_t) {
      if (wec) {
        ec = wec;
        return;
      }
      http::async_read(s, buf, res, [&](boost::system::error_code rec, std::size_t) { ec = rec; });
    });
  });
  ioc.run_for(std::chrono::seconds(6));
  if (ec) return {0, ec.message(), ""};
  return {static_cast<int>(res.result_int()), res.body(), std::string(res[http::field::content_type])};
}

bool ledger_has(const fs::path& path, const std::string& type, const std::string& text) {
  for (const auto& e : lastgood::watchdog::read_ledger(path.string()))
    if (e.type == type && e.data.dump().find(text) != std::string::npos) return true;
  return false;
}

TempDir::TempDir() {
  std::random_device rd;
  path = fs::temp_directory_path() / ("lastgood-it-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
  fs::create_directories(path);
  fs::permissions(path, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec | fs::perms::others_read |
                            fs::perms::others_exec);
}
TempDir::~TempDir() {
  std::error_code ec;
  if (!std::getenv("LASTGOOD_KEEP_TEST_DIRS")) fs::remove_all(path, ec);
}

std::string raw_exchange(unsigned short port, const std::string& request) {
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::socket sock(ioc);
  sock.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  boost::asio::write(sock, boost::asio::buffer(request));
  std::string reply;
  boost::system::error_code ec;
  boost::asio::read(sock, boost::asio::dynamic_buffer(reply), ec);  // until EOF
  return reply;
}

unsigned short free_port() {
  asio::io_context ioc;
  tcp::acceptor a(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

bool port_open(unsigned short port) {
  asio::io_context ioc;
  tcp::socket s(ioc);
  boost::system::error_code ec;
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  return !ec;
}

bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {
std::vector<char*> to_argv(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}
}  // namespace

int run_command(const std::vector<std::string>& argv_in, std::string* output) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe");
  std::vector<std::string> argv = argv_in;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    auto av = to_argv(argv);
    execvp(av[0], av.data());
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Process::Process(std::vector<std::string> argv, const fs::path& log_file, std::map<std::string, std::string> env) {
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    setpgid(0, 0);
    int fd = open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    for (auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    auto av = to_argv(argv);
    execvp(av[0], av.data());
    _exit(127);
  }
  setpgid(pid_, pid_);
}

Process::~Process() {
  if (!status_) stop(std::chrono::seconds(3));
}

bool Process::running() {
  if (status_) return false;
  int st = 0;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
    return false;
  }
  return true;
}

std::optional<int> Process::signal_and_wait(int sig, std::chrono::milliseconds timeout) {
  if (!running()) return status_;
  kill(pid_, sig);
  wait_until([&] { return !running(); }, timeout);
  return status_;
}

int Process::stop(std::chrono::milliseconds grace) {
  if (!running()) return *status_;
  if (auto st = signal_and_wait(SIGTERM, grace)) {
    kill(-pid_, SIGKILL);  // anything left in its process group
    return *st;
  }
  kill(-pid_, SIGKILL);
  int st = 0;
  waitpid(pid_, &st, 0);
  status_ = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
  return *status_;
}

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
          "      location = /to-plain { return 302 http://127.0.0.1:" + std::to_string(port) + "/index.html; }\n    }\n";
  }
  const std::string d = dir.string();
  std::string conf = "daemon off;\nworker_processes 1;\npid " + d + "/nginx.pid;\nerror_log " + d +
                     "/error.log;\nevents { worker_connections 256; }\nhttp {\n"
                     "  client_body_temp_path " + d + "/tmp/client_body;\n  proxy_temp_path " + d + "/tmp/proxy;\n"
                     "  fastcgi_temp_path " + d + "/tmp/fastcgi;\n  uwsgi_temp_path " + d + "/tmp/uwsgi;\n"
                     "  scgi_temp_path " + d + "/tmp/scgi;\n"
                     "  log_format conn '$connection $connection_requests $status \"$request\" key=$http_x_probe_key';\n"
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
                                      "\n    max_users: 100\nuplinks: {}\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n"
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

RawServer::RawServer(std::function<void(RawServer&, Socket)> serve)
    : serve_(std::move(serve)),
      acceptor_(ioc_, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)),
      port_(acceptor_.local_endpoint().port()) {
  thread_ = std::thread([this] {
    while (!stop_) {
      auto sock = std::make_shared<boost::asio::ip::tcp::socket>(ioc_);
      boost::system::error_code ec;
      acceptor_.accept(*sock, ec);
      if (ec || stop_) break;
      serve_(*this, std::move(sock));
    }
  });
}

RawServer::~RawServer() {
  stop_ = true;
  boost::system::error_code ec;
  boost::asio::ip::tcp::socket poke(ioc_);
  poke.connect(acceptor_.local_endpoint(), ec);  // wakes accept()
  thread_.join();
  for (auto& s : held_) s->close(ec);
}

HttpTestServer::HttpTestServer(lastgood::watchdog::Server::Handler handler)
    : server_(std::make_unique<lastgood::watchdog::Server>(ioc_, "127.0.0.1:0", std::move(handler))),
      port_(server_->local_endpoint().port()) {
  server_->start();
  thread_ = std::thread([this] { ioc_.run(); });
}

HttpTestServer::~HttpTestServer() {
  boost::asio::post(ioc_, [this] {
    server_->stop();
    ioc_.stop();
  });
  thread_.join();
}

DumpOnFailure::~DumpOnFailure() {
  if (std::uncaught_exceptions() == 0) return;
  std::error_code ec;
  std::cerr << "---- " << path.string() << " at the failure ----\n" << (fs::exists(path, ec) ? read_file(path) : "(missing)") << "\n----\n";
}

Lastgood::Lastgood(TempDir& d, nlohmann::json service, nlohmann::json extra)
    : dir(d), state(d.path / "state"), config(d.path / "lastgood.json") {
  nlohmann::json c{{"listen", "127.0.0.1:" + std::to_string(port)},
                   {"state_dir", state.string()},
                   {"authority", {{"P0", {{"roles", {"oncall"}}, {"quorum", 1}, {"auto", true}}}}},
                   {"services", {service}}};
  c.update(extra);
  state = c["state_dir"].get<std::string>();
  write_file(config, c.dump(2));
}

void Lastgood::start(std::map<std::string, std::string> env) {
  std::vector<std::string> argv = prefix;
  for (const char* a : {LASTGOOD_BINARY, "run", "-c"}) argv.push_back(a);
  argv.push_back(config.string());
  argv.push_back("--log-level");
  argv.push_back("debug");
  proc = std::make_unique<Process>(argv, dir.path / ("lastgood-" + std::to_string(++runs) + ".log"), env);
}

bool Lastgood::ready() { return http_call(port, "GET", "/readyz").status == 200; }

std::vector<lastgood::watchdog::LedgerEntry> Lastgood::ledger() const {
  return lastgood::watchdog::read_ledger((state / "ledger.jsonl").string(), hmac_key.empty() ? nullptr : &hmac_key);
}

std::string Lastgood::log() const {
  std::string all;
  for (int i = 1; i <= runs; ++i) all += read_file(dir.path / ("lastgood-" + std::to_string(i) + ".log"));
  return all;
}

bool Lastgood::wait_for(const std::string& type, std::function<bool(const nlohmann::json&)> pred, std::chrono::seconds t, size_t skip) {
  return wait_until(
      [&] {
        auto es = ledger();
        for (size_t i = skip; i < es.size(); ++i)
          if (es[i].type == type && (!pred || pred(es[i].data))) return true;
        return false;
      },
      t);
}

int Lastgood::count(const std::string& type) const {
  int n = 0;
  for (const auto& e : ledger()) n += e.type == type;
  return n;
}

}  // namespace testing
