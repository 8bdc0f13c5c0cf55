#include "actions/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

extern char** environ;

namespace lastgood::actions {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string ProcessResult::describe() const {
  if (!error.empty()) return error;
  if (timed_out) return "killed after its timeout";
  if (signal) return "killed by signal " + std::to_string(signal);
  return "exit status " + std::to_string(exit_status);
}

namespace {

asio::awaitable<void> drain(asio::posix::stream_descriptor& fd, std::string& into, size_t cap) {
  char buf[4096];
  size_t dropped = 0;
  for (;;) {
    auto [ec, n] = co_await fd.async_read_some(asio::buffer(buf), use_tuple);
    if (n > 0) {
      const size_t room = into.size() < cap ? cap - into.size() : 0;
      into.append(buf, std::min(n, room));
      dropped += n - std::min(n, room);
    }
    if (ec) break;  // EOF (the child closed its end) or an error
  }
  if (dropped) into += "\n[... " + std::to_string(dropped) + " more bytes dropped]";
}

asio::awaitable<void> await_exit(asio::posix::stream_descriptor* pidfd, pid_t pid, int& status) {
  if (pidfd) {
    // A readiness that is not the exit (seen when another run's pidfd had had the same number)
    // must not become a blocking waitpid on the loop: WNOHANG, and if it still runs, poll.
    auto [ec] = co_await pidfd->async_wait(asio::posix::stream_descriptor::wait_read, use_tuple);
    if (ec) co_return;  // cancelled (the deadline)
    const pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid || w < 0) co_return;  // reaped, or already reaped
  }
  asio::steady_timer t(co_await asio::this_coro::executor);  // no pidfd: poll
  for (;;) {
    const pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid || w < 0) co_return;  // reaped, or already reaped
    t.expires_after(std::chrono::milliseconds(20));
    auto [ec] = co_await t.async_wait(use_tuple);
    if (ec) co_return;
  }
}

// At the deadline (unless cancelled first, when the run ended): the run is killed and its pipes
// are no longer read.
asio::awaitable<void> kill_at(asio::steady_timer& deadline, bool& timed_out, pid_t pid, const std::string& marker,
                              asio::posix::stream_descriptor& out, asio::posix::stream_descriptor& err);

// Every process that carries this run's marker in its environment, or descends from `leader`
// (by parent links in /proc): what a command started, including what left its process group or
// session (setsid) and what was orphaned to init. Only processes of our own user are readable.
std::set<pid_t> run_processes(pid_t leader, const std::string& marker) {
  std::map<pid_t, pid_t> parent;
  std::set<pid_t> found;
  if (DIR* d = ::opendir("/proc")) {
    while (const dirent* e = ::readdir(d)) {
      char* end = nullptr;
      const long v = std::strtol(e->d_name, &end, 10);
      if (!end || *end || v <= 0) continue;
      const pid_t p = static_cast<pid_t>(v);
      std::ifstream stat("/proc/" + std::string(e->d_name) + "/stat");
      std::string line;
      if (std::getline(stat, line)) {
        const auto close = line.rfind(')');  // the command name may hold spaces and parentheses
        std::istringstream rest(close == std::string::npos ? "" : line.substr(close + 2));
        char state = 0;
        long ppid = 0;
        if (rest >> state >> ppid) parent[p] = static_cast<pid_t>(ppid);
      }
      std::ifstream env("/proc/" + std::string(e->d_name) + "/environ", std::ios::binary);
      std::string var;
      while (std::getline(env, var, '\0'))
        if (var == marker) {
          found.insert(p);
          break;
        }
    }
    ::closedir(d);
  }
  if (leader > 0) found.insert(leader);
  for (bool grew = true; grew;) {  // descendants of anything found
    grew = false;
    for (const auto& [p, pp] : parent)
      if (found.count(pp) && found.insert(p).second) grew = true;
  }
  return found;
}

// Kills the process group and every process of the run that can be found, twice (a fork racing
// the first pass is caught by the second).
// `leader` 0: it was reaped already (its pid may be another process's now), only the marker counts.
void kill_run(pid_t leader, const std::string& marker) {
  if (leader > 0) ::kill(-leader, SIGKILL);
  for (int pass = 0; pass < 2; ++pass)
    for (pid_t p : run_processes(leader, marker))
      if (p > 0 && p != ::getpid()) ::kill(p, SIGKILL);
}

}  // namespace

asio::awaitable<ProcessResult> run_process(asio::any_io_executor ex, std::vector<std::string> argv, std::vector<std::string> env_allow,
                                           std::chrono::milliseconds timeout, size_t cap, std::vector<std::string> extra_env, std::string cwd) {
  ProcessResult r;
  if (argv.empty()) {
    r.error = "empty command";
    co_return r;
  }
  // The child's environment: only the allowed variables, as they are here, and this run's marker
  // (inherited by whatever it starts, so that a timeout finds them all).
  static std::atomic<unsigned> runs{0};
  const std::string marker = "LASTGOOD_RUN=" + std::to_string(::getpid()) + "-" + std::to_string(++runs);
  std::vector<std::string> env;
  for (const auto& name : env_allow)
    if (const char* v = std::getenv(name.c_str()); v && name != "LASTGOOD_RUN") env.push_back(name + "=" + v);
  for (auto& e : extra_env) env.push_back(std::move(e));  // LASTGOOD_FENCE, LASTGOOD_ACTION_ID
  env.push_back(marker);
  std::vector<char*> cargv, cenv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  for (auto& e : env) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  // Where to look for argv[0], made before fork: between fork and exec the child may only make
  // async-signal-safe calls (lastgood has threads), so nothing is allocated there.
  std::vector<std::string> candidates;
  if (std::strchr(cargv[0], '/')) {
    candidates.push_back(argv[0]);
  } else {
    const std::string path_search = std::getenv("PATH") ? std::getenv("PATH") : "/usr/local/bin:/usr/bin:/bin";
    size_t start = 0;
    while (start <= path_search.size()) {
      const size_t colon = path_search.find(':', start);
      const std::string dir = path_search.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
      candidates.push_back((dir.empty() ? "." : dir) + "/" + argv[0]);
      if (colon == std::string::npos) break;
      start = colon + 1;
    }
  }

  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    r.error = std::string("pipe: ") + std::strerror(errno);
    co_return r;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    r.error = std::string("fork: ") + std::strerror(errno);
    co_return r;
  }
  if (pid == 0) {
    ::setpgid(0, 0);  // its own process group, so a timeout kills everything it started
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) {
      const char* msg = "lastgood: cannot change to the working directory\n";
      (void)!::write(2, msg, std::strlen(msg));
      ::_exit(126);
    }
    const int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    // No descriptor of lastgood's reaches the command (the API's listening socket, the ledger,
    // probe connections): everything above stderr is closed, whatever its close-on-exec flag.
    if (::syscall(SYS_close_range, 3U, ~0U, 0U) != 0)
      for (int fd = 3; fd < 65536; ++fd) ::close(fd);  // kernels before 5.9
    for (const auto& c : candidates) ::execve(c.c_str(), cargv.data(), cenv.data());
    const char* msg = "lastgood: cannot execute the command\n";
    (void)!::write(2, msg, std::strlen(msg));
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  ::close(out[1]);
  ::close(err[1]);
  asio::posix::stream_descriptor out_fd(ex, out[0]), err_fd(ex, err[0]);
  std::unique_ptr<asio::posix::stream_descriptor> pidfd;
  const int pfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pfd >= 0) pidfd = std::make_unique<asio::posix::stream_descriptor>(ex, pfd);

  // The deadline bounds the whole run: at it, the process group and every process of the run are
  // killed (including what moved to a session of its own and still holds the pipes), the pipes
  // are no longer read, and the timeout is recorded.
  asio::steady_timer deadline(ex);
  deadline.expires_after(timeout);
  int status = 0;
  // Cancelled from outside (this replica lost the service, ha.md), the coroutine unwinds from the
  // next co_await: then the run is killed here, and the leader reaped off the loop.
  struct KillOnUnwind {
    pid_t pid;
    const std::string& marker;
    bool reaped = false;
    ~KillOnUnwind() {
      if (reaped) return;
      kill_run(pid, marker);
      ::kill(-pid, SIGKILL);
      std::thread([p = pid] { ::waitpid(p, nullptr, 0); }).detach();
    }
  } guard{pid, marker};
  // The deadline's branch kills the run and stops the reads itself: the other branch ends because
  // its processes are dead and its reads cancelled, not only because the group cancels it.
  co_await ((drain(out_fd, r.out, cap) && drain(err_fd, r.err, cap) && await_exit(pidfd.get(), pid, status)) ||
            kill_at(deadline, r.timed_out, pid, marker, out_fd, err_fd));
  if (r.timed_out) co_await await_exit(pidfd.get(), pid, status);  // the leader was killed: reaped at once (or was already)
  guard.reaped = true;
  ::kill(-pid, SIGKILL);  // anything it left running in its group (the group id is not reused before we reaped the leader)
  if (WIFEXITED(status)) r.exit_status = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  co_return r;
}

namespace {

asio::awaitable<void> kill_at(asio::steady_timer& deadline, bool& timed_out, pid_t pid, const std::string& marker,
                              asio::posix::stream_descriptor& out, asio::posix::stream_descriptor& err) {
  auto [ec] = co_await deadline.async_wait(use_tuple);
  if (ec) co_return;  // the run ended first
  timed_out = true;
  siginfo_t info{};  // still ours (running, or exited and not reaped): its pid is not reused yet
  const bool ours = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0;
  kill_run(ours ? pid : 0, marker);
  boost::system::error_code ignored;
  out.cancel(ignored);  // what still holds the pipes is not waited for
  err.cancel(ignored);
}

}  // namespace

}  // namespace lastgood::actions
