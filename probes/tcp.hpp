#pragma once
// The "tcp" probe kind: connect, optionally send a payload and check the reply's prefix.
#include <optional>
#include <string>

#include "probes/probe.hpp"

namespace lastgood::probes {

struct TcpSpec final : config::KindSpec {
  std::string host;
  std::string port;
  std::optional<std::string> send;
  std::optional<std::string> expect_reply_prefix;
  std::optional<config::Duration> max_latency;
};

extern const Kind tcp_kind;

}  // namespace lastgood::probes
