#pragma once
#include "probes/probe.hpp"

namespace lastgood::probes {
// TCP probe: connect, optionally send a payload and check the reply's prefix.
std::unique_ptr<Probe> make_tcp_probe(boost::asio::any_io_executor ex, const std::string& service, const config::Probe& spec);
}
