// Where services and keys live with several replicas (ha.md): shards, the campaign order, keys.
#include <catch2/catch.hpp>

#include <map>
#include <set>

#include "watchdog/ha/coordinator.hpp"
#include "watchdog/ha/placement.hpp"

using namespace lastgood::watchdog::ha;

TEST_CASE("FNV-1a 64 is the published function (stable across builds and machines)", "[ha]") {
  CHECK(fnv1a64("") == 14695981039346656037ull);
  CHECK(fnv1a64("a") == 0xaf63dc4c8601ec8cull);
  CHECK(fnv1a64("foobar") == 0x85944171f73967e8ull);
}

TEST_CASE("services spread over shards; one shard holds them all", "[ha]") {
  std::map<int, int> per;
  for (int i = 0; i < 8000; ++i) {
    const int s = shard_of("svc-" + std::to_string(i), 8);
    REQUIRE(s >= 0);
    REQUIRE(s < 8);
    ++per[s];
  }
  REQUIRE(per.size() == 8);
  for (const auto& [s, n] : per) {
    INFO("shard " << s);
    CHECK(n > 800);   // 1000 expected each
    CHECK(n < 1200);
  }
  CHECK(shard_of("anything", 1) == 0);
  CHECK(shard_of("checkout", 16) == shard_of("checkout", 16));
}

TEST_CASE("the campaign order: the same on every replica whatever the list's order, first places spread, a leaver moves only its own", "[ha]") {
  const std::vector<std::string> abc{"a", "b", "c"}, cba{"c", "b", "a", "b"};
  std::map<std::string, int> first;
  for (int shard = 0; shard < 300; ++shard) {
    const auto order = campaign_order(shard, abc);
    REQUIRE(order == campaign_order(shard, cba));  // duplicates and order of the list do not matter
    REQUIRE(order.size() == 3);
    CHECK(rank_of(shard, order[0], abc) == 0);
    CHECK(rank_of(shard, order[2], abc) == 2);
    ++first[order[0]];
    // Without "b", the others keep their relative order: only b's shards change hands.
    const auto without_b = campaign_order(shard, {"a", "c"});
    std::vector<std::string> expected;
    for (const auto& m : order)
      if (m != "b") expected.push_back(m);
    CHECK(without_b == expected);
  }
  for (const auto& [m, n] : first) {
    INFO(m);
    CHECK(n > 60);  // 100 expected each
  }
  CHECK(rank_of(0, "z", abc) == 3);  // not a member: after everyone
}

TEST_CASE("the etcd keys of ha.md", "[ha]") {
  const Keys k("prod");
  CHECK(k.owner(3) == "/lastgood/prod/shard/3/owner");
  CHECK(k.member("a") == "/lastgood/prod/members/a");
  CHECK(k.service_state("checkout") == "/lastgood/prod/svc/checkout/state");
  CHECK(k.service_active("checkout") == "/lastgood/prod/svc/checkout/active");
  CHECK(k.action("a-17") == "/lastgood/prod/actions/a-17");
  CHECK(k.vote("p-3", "alice") == "/lastgood/prod/votes/p-3/alice");
}

TEST_CASE("a replica may act on a service only while it owns the service's shard, with that fence", "[ha]") {
  std::map<int, std::int64_t> owned{{shard_of("checkout", 4), 1207}};
  HaCoordinator c("t", "a", 4, [&](int shard) -> std::optional<std::int64_t> {
    auto it = owned.find(shard);
    if (it == owned.end()) return std::nullopt;
    return it->second;
  });
  const auto g = c.may_act("checkout");
  CHECK(g.granted);
  CHECK(g.fence == 1207);
  owned.clear();  // lost: standby, or cut off
  const auto refused = c.may_act("checkout");
  CHECK_FALSE(refused.granted);
  CHECK_THAT(refused.why, Catch::Contains("does not own shard " + std::to_string(shard_of("checkout", 4))));
}
