// A kind cannot be half-registered: the config's tables and the factories' tables name the same
// probe and deployment kinds, in the same order.
#include <catch2/catch.hpp>

#include "actions/action.hpp"
#include "config/config.hpp"
#include "probes/probe.hpp"

TEST_CASE("every probe and deployment kind the config accepts has an implementation, and no other", "[kinds]") {
  CHECK(lastgood::probes::kinds() == lastgood::config::probe_kinds());
  CHECK(lastgood::actions::kinds() == lastgood::config::deployment_kinds());
}
