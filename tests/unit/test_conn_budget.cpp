// The probes' connection budget: within capacity every socket is granted; past it the connection
// idle longest is evicted; when all are in a request a new one is refused (never over capacity);
// the share of an open-files limit leaves the API and a margin their descriptors.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include "net/conn_budget.hpp"

using lastgood::net::ConnectionBudget;

namespace {
struct Conn final : ConnectionBudget::Member {
  int evicted = 0;
  void evict() override { ++evicted; }
};
}  // namespace

TEST_CASE("connection budget: grants, evicts the idle longest, refuses when all are in a request", "[conn_budget]") {
  boost::asio::io_context ioc;
  auto& b = ConnectionBudget::of(ioc.get_executor());
  CHECK(&b == &ConnectionBudget::of(ioc.get_executor()));  // one per io_context
  b.set_capacity(3);
  Conn a, c1, c2, d, e;
  REQUIRE(b.acquire(a));
  REQUIRE(b.acquire(c1));
  REQUIRE(b.acquire(c2));
  CHECK(b.in_use() == 3);
  CHECK_FALSE(b.acquire(d));  // all three in a request: refused, not over capacity
  CHECK(b.refusals() == 1);
  CHECK(b.acquire(a));  // one already held is granted again without counting twice
  CHECK(b.in_use() == 3);
  b.idle(c1);  // c1 idle first, then a: c1 is the one idle longest
  b.idle(a);
  CHECK(b.kept() == 2);
  CHECK(b.in_use() == 1);
  REQUIRE(b.acquire(d));
  CHECK(c1.evicted == 1);
  CHECK_FALSE(c1.holds);
  CHECK(a.evicted == 0);
  CHECK(b.evictions() == 1);
  b.busy(a);  // a request starts on a: no longer evictable
  CHECK_FALSE(b.acquire(e));
  b.idle(a);
  REQUIRE(b.acquire(e));
  CHECK(a.evicted == 1);
  CHECK(b.kept() == 0);
  CHECK(b.in_use() == 3);
  // Released sockets free their place, idle or not.
  b.idle(d);
  b.release(d);
  b.release(e);
  b.release(c2);
  CHECK(b.in_use() == 0);
  CHECK(b.kept() == 0);
  CHECK(b.acquire(c1));
  b.release(c1);
  b.release(c1);  // twice: nothing more
  CHECK(b.in_use() == 0);
}

TEST_CASE("connection budget: no capacity means no limit", "[conn_budget]") {
  boost::asio::io_context ioc;
  auto& b = ConnectionBudget::of(ioc.get_executor());
  std::vector<Conn> many(1000);
  for (auto& m : many) CHECK(b.acquire(m));
  CHECK(b.in_use() == 1000);
  for (auto& m : many) b.release(m);
}

TEST_CASE("connection budget: the probes' share of an open-files limit", "[conn_budget]") {
  CHECK(ConnectionBudget::share_of(20000, 1024) == 20000 - 1024 - 1000);
  CHECK(ConnectionBudget::share_of(1024, 128) == 1024 - 128 - 64);
  CHECK(ConnectionBudget::share_of(128, 16) == 128 - 16 - 64);
  CHECK(ConnectionBudget::share_of(64, 16) == 16);  // never less than 16
  CHECK(ConnectionBudget::share_of(0, 16) == 0);    // unknown limit: none
}
