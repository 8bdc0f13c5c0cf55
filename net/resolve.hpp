#pragma once
// Name resolution under a deadline, shared by the probes, the HTTP client and the SSH session.
// getaddrinfo runs on Asio's resolver thread and cannot be interrupted; the deadline cancels the
// wait for it.
#include <chrono>
#include <optional>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace lastgood::net {

struct Resolved {
  boost::asio::ip::tcp::resolver::results_type endpoints;
  std::optional<std::string> error;  // "resolving <host> timed out" or "resolving <host>: <why>"
  bool timeout = false;
};

boost::asio::awaitable<Resolved> resolve(boost::asio::any_io_executor ex, const std::string& host, const std::string& port,
                                         std::chrono::steady_clock::time_point deadline);

}  // namespace lastgood::net
