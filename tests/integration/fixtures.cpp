#include "fixtures.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <exception>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <set>
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
  // Port 0 would hand back an ephemeral port, which any outgoing connection (a probe of lastgood's)
  // may take between this check and the server's bind. Ports below the kernel's ephemeral range
  // are only ever taken by an explicit bind; each is handed out once per test process, and the
  // start differs per process (ctest runs two at once).
  static std::mutex mu;
  static std::set<unsigned short> given;
  static std::mt19937 rng(static_cast<unsigned>(::getpid()) * 2654435761u);
  int low = 32768;
  if (std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range"); range) range >> low;
  const int lo = 10000, hi = std::max(lo + 1000, low);
  std::lock_guard lock(mu);
  asio::io_context ioc;
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const auto port = static_cast<unsigned short>(lo + static_cast<int>(rng() % static_cast<unsigned>(hi - lo)));
    if (given.count(port)) continue;
    tcp::acceptor a(ioc);
    boost::system::error_code ec;
    a.open(tcp::v4(), ec);
    if (!ec) a.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
    if (ec) continue;  // in use
    given.insert(port);
    return port;
  }
  throw std::runtime_error("no free port below the ephemeral range");
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

}  // namespace testing
