#pragma once
#include "probes/probe.hpp"

namespace lastgood::probes {
// HTTP/HTTPS probe: one kept-alive connection per probe, expectations from config `expect`.
std::unique_ptr<Probe> make_http_probe(boost::asio::any_io_executor ex, const std::string& service, const config::Probe& spec);
}
