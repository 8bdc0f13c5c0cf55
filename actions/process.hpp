#pragma once
// Child processes on the event loop without blocking it: argv only (no shell), an environment
// allow-list (plus LASTGOOD_RUN, a marker unique to the run), stdout/stderr read through
// non-blocking pipes, the exit awaited through a pidfd, no descriptor of lastgood's inherited
// (close_range after fork). The timeout bounds the whole run: at it the process group and every
// process carrying the run's marker or descending from the command are killed (also those that
// moved to a session of their own and hold the pipes), and reading stops.
#include <chrono>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

namespace lastgood::actions {

struct ProcessResult {
  int exit_status = -1;  // when it exited
  int signal = 0;        // when a signal ended it
  bool timed_out = false;
  std::string out, err;  // capped
  std::string error;     // it could not be started
  bool succeeded() const { return error.empty() && !timed_out && signal == 0 && exit_status == 0; }
  std::string describe() const;  // "exit status 3", "killed after timeout 2s", ...
};

boost::asio::awaitable<ProcessResult> run_process(boost::asio::any_io_executor ex, std::vector<std::string> argv,
                                                  std::vector<std::string> env_allow, std::chrono::milliseconds timeout,
                                                  size_t cap = 16 * 1024, std::vector<std::string> extra_env = {}, std::string cwd = {});

}  // namespace lastgood::actions
