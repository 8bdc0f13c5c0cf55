#pragma once
// One SSH connection (libssh2, non-blocking, driven by Asio's async_wait on the socket): host
// key checked against known_hosts before anything else, key or agent auth, commands run with
// their exit status and output. The session is kept and reused; any error drops it and the
// next call reconnects. Every step has a deadline.
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

namespace lastgood::actions {

struct SshOptions {
  std::string host;
  int port = 22;
  std::string user;
  std::string key_file;  // private key; empty with use_agent
  bool use_agent = false;
  std::string known_hosts;
  std::chrono::milliseconds timeout{30'000};  // per command, connecting included
};

struct ExecResult {
  int exit_status = -1;
  std::string out, err;  // capped
  std::string error;     // set when the command could not be run (connection, host key, auth, timeout)
  bool ran() const { return error.empty(); }
};

class SshSession {
 public:
  SshSession(boost::asio::any_io_executor ex, SshOptions opts);
  ~SshSession();
  SshSession(const SshSession&) = delete;
  SshSession& operator=(const SshSession&) = delete;

  boost::asio::awaitable<ExecResult> exec(std::string command);
  int connections_made() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// A POSIX shell single-quoted word.
std::string shell_quote(const std::string& s);

}  // namespace lastgood::actions
