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

TEST_CASE("connection budget: grants, keeps a fixed share, evicts the idle longest, refuses when all are in a request", "[conn_budget]") {
  boost::asio::io_context ioc;
  auto& b = ConnectionBudget::of(ioc.get_executor());
  CHECK(&b == &ConnectionBudget::of(ioc.get_executor()));  // one per io_context
  b.set_capacity(4);
  CHECK(b.keep_limit() == 2);  // a share (here half) is left for probes connecting per run
  Conn a, c1, c2, d, e;
  REQUIRE(b.acquire(a));
  REQUIRE(b.acquire(c1));
  REQUIRE(b.acquire(c2));
  REQUIRE(b.acquire(d));
  CHECK(b.in_use() == 4);
  CHECK_FALSE(b.acquire(e));  // all four in a request: refused, not over capacity
  CHECK(b.refusals() == 1);
  CHECK(b.acquire(a));  // one already held is granted again without counting twice
  CHECK(b.in_use() == 4);
  // Requests end: with 4 held, none may stay (held > keep_limit): each closes after its run.
  CHECK_FALSE(b.idle(d));
  b.release(d);
  CHECK_FALSE(b.idle(c2));
  b.release(c2);
  // Two held now: these may stay, idle c1 first, then a.
  CHECK(b.idle(c1));
  CHECK(b.idle(a));
  CHECK(b.idle(a));  // again: still kept, counted once
  CHECK(b.kept() == 2);
  CHECK(b.in_use() == 0);
  // Per-run sockets fill the rest; past capacity the one idle longest (c1) makes room.
  REQUIRE(b.acquire(d));
  REQUIRE(b.acquire(c2));
  REQUIRE(b.acquire(e));
  CHECK(c1.evicted == 1);
  CHECK_FALSE(c1.holds);
  CHECK(a.evicted == 0);
  CHECK(b.evictions() == 1);
  b.busy(a);  // a request starts on a: no longer evictable
  Conn f;
  CHECK_FALSE(b.acquire(f));
  // Released sockets free their place, idle or not.
  b.release(d);
  b.release(e);
  b.release(c2);
  b.release(a);
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

TEST_CASE("connection budget: the probes' share of an open-files limit, and the part kept alive", "[conn_budget]") {
  boost::asio::io_context ioc;
  auto& b = ConnectionBudget::of(ioc.get_executor());
  b.set_capacity(17976);
  CHECK(b.keep_limit() == 17976 - 1797);
  b.set_capacity(160);
  CHECK(b.keep_limit() == 144);
  b.set_capacity(0);
  CHECK(b.keep_limit() == static_cast<std::size_t>(-1));
  CHECK(ConnectionBudget::share_of(20000, 1024) == 20000 - 1024 - 1000);
  CHECK(ConnectionBudget::share_of(1024, 128) == 1024 - 128 - 64);
  CHECK(ConnectionBudget::share_of(128, 16) == 128 - 16 - 64);
  CHECK(ConnectionBudget::share_of(64, 16) == 16);  // never less than 16
  CHECK(ConnectionBudget::share_of(0, 16) == 0);    // unknown limit: none
}
