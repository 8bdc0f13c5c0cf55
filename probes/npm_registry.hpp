#pragma once
#include "probes/probe.hpp"

namespace lastgood::probes {
// npm_registry probe: the packument is served, `tag` resolves to a version, that version's
// tarball downloads and matches dist.integrity (sha512; else shasum), optionally not deprecated.
// A mismatch fails with condition "integrity". The version is reported as observed_release.
std::unique_ptr<Probe> make_npm_registry_probe(boost::asio::any_io_executor ex, const std::string& service, const config::Probe& spec);
}
