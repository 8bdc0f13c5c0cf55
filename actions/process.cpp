#include "actions/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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
    co_await pidfd->async_wait(asio::posix::stream_descriptor::wait_read, use_tuple);
    ::waitpid(pid, &status, 0);  // it has exited: does not block
    co_return;
  }
  asio::steady_timer t(co_await asio::this_coro::executor);  // no pidfd: poll
  for (;;) {
    if (::waitpid(pid, &status, WNOHANG) == pid) co_return;
    t.expires_after(std::chrono::milliseconds(20));
    co_await t.async_wait(use_tuple);
  }
}

}  // namespace

asio::awaitable<ProcessResult> run_process(asio::any_io_executor ex, std::vector<std::string> argv, std::vector<std::string> env_allow,
                                           std::chrono::milliseconds timeout, size_t cap) {
  ProcessResult r;
  if (argv.empty()) {
    r.error = "empty command";
    co_return r;
  }
  // The child's environment: only the allowed variables, as they are here.
  std::vector<std::string> env;
  for (const auto& name : env_allow)
    if (const char* v = std::getenv(name.c_str())) env.push_back(name + "=" + v);
  std::vector<char*> cargv, cenv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  for (auto& e : env) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  std::string path_search = std::getenv("PATH") ? std::getenv("PATH") : "/usr/local/bin:/usr/bin:/bin";

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
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    if (std::strchr(cargv[0], '/')) {
      ::execve(cargv[0], cargv.data(), cenv.data());
    } else {
      size_t start = 0;
      while (start <= path_search.size()) {
        size_t colon = path_search.find(':', start);
        std::string dir = path_search.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
        std::string full = (dir.empty() ? "." : dir) + "/" + cargv[0];
        ::execve(full.c_str(), cargv.data(), cenv.data());
        if (colon == std::string::npos) break;
        start = colon + 1;
      }
    }
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

  struct State {
    bool done = false, timed_out = false;
  };
  auto st = std::make_shared<State>();  // outlives this frame if the timer's handler runs late
  asio::steady_timer deadline(ex);
  deadline.expires_after(timeout);
  deadline.async_wait([pid, st](boost::system::error_code ec) {
    if (ec || st->done) return;
    st->timed_out = true;
    ::kill(-pid, SIGKILL);
  });
  int status = 0;
  co_await (drain(out_fd, r.out, cap) && drain(err_fd, r.err, cap) && await_exit(pidfd.get(), pid, status));
  ::kill(-pid, SIGKILL);  // anything it left running in its group (the group id is not reused before we reaped the leader)
  st->done = true;
  deadline.cancel();
  r.timed_out = st->timed_out;
  if (WIFEXITED(status)) r.exit_status = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  co_return r;
}

}  // namespace lastgood::actions
