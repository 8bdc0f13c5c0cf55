// lastgood's etcd client against a real etcd 3.4 (Debian's etcd-server) through its JSON
// gateway: a lease and a campaign as ha.md describes them, endpoint rotation, a lost quorum as
// "unavailable" within the call's deadline.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include "fixtures.hpp"
#include "watchdog/ha/etcd.hpp"

using namespace testing;
using namespace lastgood::watchdog::ha;
namespace asio = boost::asio;

namespace {

template <typename T>
const T& ok(const EtcdResult<T>& r) {
  if (const auto* e = std::get_if<EtcdError>(&r)) FAIL("etcd: " << e->message);
  return std::get<T>(r);
}

// The campaign of ha.md: create the owner key on the lease only if it does not exist; else read
// who holds it.
Txn campaign(const std::string& key, const std::string& me, std::int64_t lease) {
  Txn t;
  t.compare.push_back({key, Compare::Target::create, Compare::Result::equal, 0, ""});
  t.success.push_back(Op::put(key, me, lease));
  t.failure.push_back(Op::range(key));
  return t;
}

}  // namespace

TEST_CASE("a lease and a campaign on a real etcd: one owner, the other reads who; the key goes with the lease", "[ha]") {
  TempDir dir;
  Etcd etcd(dir.path / "etcd");
  asio::io_context ioc;
  EtcdClient a(ioc.get_executor(), {etcd.endpoints()});
  EtcdClient b(ioc.get_executor(), {etcd.endpoints()});
  const std::string key = "/lastgood/test/shard/0/owner";

  const auto la = ok(run_sync(ioc, a.grant(std::chrono::seconds(5))));
  const auto lb = ok(run_sync(ioc, b.grant(std::chrono::seconds(5))));
  CHECK(la.ttl == 5);
  CHECK(la.id != lb.id);

  const auto won = ok(run_sync(ioc, a.txn(campaign(key, "a", la.id))));
  CHECK(won.succeeded);
  const auto lost = ok(run_sync(ioc, b.txn(campaign(key, "b", lb.id))));
  CHECK_FALSE(lost.succeeded);  // etcd omits "succeeded" when false
  REQUIRE(lost.ranges.size() == 1);
  REQUIRE(lost.ranges[0].size() == 1);
  CHECK(lost.ranges[0][0].value == "a");
  CHECK(lost.ranges[0][0].lease == la.id);
  CHECK(lost.ranges[0][0].create_revision == won.revision);  // the owner's epoch: the winning transaction's revision
  CHECK(lost.revision >= won.revision);

  const auto ttl = ok(run_sync(ioc, a.keepalive(la.id)));
  REQUIRE(ttl.has_value());
  CHECK(*ttl == 5);

  // A prefix range sees the key; revoking the lease deletes it, and a keepalive then says "gone".
  CHECK(ok(run_sync(ioc, b.range("/lastgood/test/", true))).kvs.size() == 1);
  CHECK(ok(run_sync(ioc, a.revoke(la.id))));
  CHECK(ok(run_sync(ioc, b.range(key))).kvs.empty());
  CHECK_FALSE(ok(run_sync(ioc, a.keepalive(la.id))).has_value());
  CHECK(ok(run_sync(ioc, a.revoke(la.id))));  // revoking it again is no error
  // Now b wins.
  CHECK(ok(run_sync(ioc, b.txn(campaign(key, "b", lb.id)))).succeeded);
}

TEST_CASE("an endpoint that does not answer is skipped for the next one within the call's deadline", "[ha]") {
  TempDir dir;
  Etcd etcd(dir.path / "etcd");
  asio::io_context ioc;
  const std::string dead = "http://127.0.0.1:" + std::to_string(free_port());  // nothing listens
  EtcdClient c(ioc.get_executor(), {{dead, etcd.endpoints()[0]}, std::chrono::milliseconds(2000)});
  const auto g = ok(run_sync(ioc, c.grant(std::chrono::seconds(5))));
  CHECK(g.id != 0);
  CHECK(c.endpoint() == etcd.endpoints()[0]);  // the next call goes there first
}

TEST_CASE("a cluster without quorum is 'unavailable' within the deadline, and answers again when it is back", "[ha]") {
  TempDir dir;
  Etcd etcd(dir.path / "etcd", 3);
  asio::io_context ioc;
  EtcdClient c(ioc.get_executor(), {etcd.endpoints(), std::chrono::milliseconds(1500)});
  CHECK(ok(run_sync(ioc, c.grant(std::chrono::seconds(5)))).id != 0);  // the cluster answers
  etcd.stop(1);
  etcd.stop(2);
  // A write needs a quorum (a keepalive does not at first: the old leader renews leases on its own
  // until it steps down, after the election timeout).
  Txn write;
  write.success.push_back(Op::put("/lastgood/test/x", "1"));
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = run_sync(ioc, c.txn(write));
  const auto took = std::chrono::steady_clock::now() - t0;
  REQUIRE(std::holds_alternative<EtcdError>(r));
  CHECK(std::get<EtcdError>(r).unavailable);
  CHECK(took < std::chrono::seconds(5));  // the 1.5 s deadline holds (with room for a loaded machine): never stalled
  etcd.cont(1);
  etcd.cont(2);
  REQUIRE(wait_until([&] { return std::holds_alternative<TxnResult>(run_sync(ioc, c.txn(write))); }, std::chrono::seconds(20)));
}
