// lastgood's etcd client against a real etcd 3.4 (Debian's etcd-server) through its JSON
// gateway: a lease and a campaign as ha.md describes them, endpoint rotation, a lost quorum as
// "unavailable" within the call's deadline.
#include <catch2/catch.hpp>

#include <map>
#include <set>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "fixtures.hpp"
#include "watchdog/ha/etcd.hpp"
#include "watchdog/ha/intent.hpp"
#include "watchdog/ha/placement.hpp"
#include "watchdog/ha/replica.hpp"
#include "watchdog/ha/watch.hpp"

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

namespace {

// Replicas of one cluster on one loop, with ha.md's test timings (5 s lease, 3 s renew, 0.5 s retry).
struct Cluster {
  asio::io_context ioc;
  std::vector<std::unique_ptr<EtcdClient>> clients;
  std::vector<std::unique_ptr<Replica>> replicas;
  std::vector<std::string> events;  // "a+0@fence" acquired, "a-0: why" lost

  Cluster(const std::vector<std::string>& endpoints, const std::vector<std::string>& names, int shards) {
    for (const auto& n : names) {
      clients.push_back(std::make_unique<EtcdClient>(ioc.get_executor(), EtcdOptions{endpoints, std::chrono::milliseconds(1000)}));
      ReplicaOptions o{"test", n, "127.0.0.1:1", shards, std::chrono::seconds(5), std::chrono::milliseconds(3000), std::chrono::milliseconds(500)};
      replicas.push_back(std::make_unique<Replica>(ioc.get_executor(), *clients.back(), o, [this, n](int shard, std::int64_t fence, const std::string& why) {
        events.push_back(n + (fence ? "+" : "-") + std::to_string(shard) + (fence ? "@" + std::to_string(fence) : ": " + why));
      }));
    }
    for (auto& r : replicas) r->start();
  }
  // Stops the replicas and lets their cancelled coroutines unwind while the clients still exist.
  ~Cluster() {
    for (auto& r : replicas) r->stop();
    ioc.restart();
    ioc.run_for(std::chrono::milliseconds(300));
  }
  // Runs the loop until cond holds or `limit` passes.
  bool run_until(const std::function<bool()>& cond, std::chrono::seconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      ioc.run_for(std::chrono::milliseconds(50));
      if (cond()) return true;
    }
    return cond();
  }
  int owners(int shard) const {
    int n = 0;
    for (const auto& r : replicas) n += r->owns(shard);
    return n;
  }
};

}  // namespace

TEST_CASE("replicas on a real etcd: one owner per shard, the shards spread, a resigning owner's shards move at once", "[ha]") {
  TempDir dir;
  Etcd etcd(dir.path / "etcd");
  Cluster c(etcd.endpoints(), {"a", "b", "c"}, 6);
  auto all_owned = [&] {
    for (int s = 0; s < 6; ++s)
      if (c.owners(s) != 1) return false;
    return true;
  };
  REQUIRE(c.run_until(all_owned, std::chrono::seconds(20)));
  // Whoever campaigned first, each shard settles on the first replica of its rendezvous order
  // (the others hand it over once that one has joined).
  REQUIRE(c.run_until([&] {
    if (!all_owned()) return false;
    for (int s = 0; s < 6; ++s) {
      const auto first = campaign_order(s, {"a", "b", "c"})[0];
      const size_t i = first == "a" ? 0 : first == "b" ? 1 : 2;
      if (!c.replicas[i]->owns(s)) return false;
    }
    return true;
  }, std::chrono::seconds(20)));
  // Let it run: ownership stays put (no flapping while the leases are kept alive).
  const auto before = c.events.size();
  c.run_until([] { return false; }, std::chrono::seconds(3));
  CHECK(c.events.size() == before);
  CHECK(all_owned());
  std::set<std::int64_t> fences;
  for (int s = 0; s < 6; ++s)
    for (const auto& r : c.replicas)
      if (auto f = r->fence(s)) fences.insert(*f);
  CHECK(fences.size() == 6);  // each shard's fence is its own transaction's revision

  // "a" resigns (SIGTERM): it owns nothing at once, and its shards have a new owner well within the lease.
  std::map<int, std::int64_t> a_fence;
  std::vector<int> a_shards;
  for (int s = 0; s < 6; ++s)
    if (auto f = c.replicas[0]->fence(s)) {
      a_shards.push_back(s);
      a_fence[s] = *f;
    }
  bool resigned = false;
  asio::co_spawn(c.ioc, [&]() -> asio::awaitable<void> { co_await c.replicas[0]->resign(); resigned = true; }, asio::detached);
  REQUIRE(c.run_until([&] { return resigned; }, std::chrono::seconds(5)));
  for (int s : a_shards) CHECK_FALSE(c.replicas[0]->owns(s));
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(c.run_until([&] {
    for (int s : a_shards)
      if (c.replicas[1]->owns(s) + c.replicas[2]->owns(s) != 1) return false;
    return true;
  }, std::chrono::seconds(10)));
  INFO("took over in " << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count() << " ms");
  for (int s : a_shards) {
    const auto f = c.replicas[1]->fence(s) ? c.replicas[1]->fence(s) : c.replicas[2]->fence(s);
    CHECK(*f > a_fence[s]);  // a new epoch: the fence only grows
  }
}

TEST_CASE("without an etcd quorum the owner steps down within the renew deadline, and one owner returns after", "[ha]") {
  TempDir dir;
  Etcd etcd(dir.path / "etcd", 3);
  Cluster c(etcd.endpoints(), {"a", "b"}, 1);
  REQUIRE(c.run_until([&] { return c.owners(0) == 1; }, std::chrono::seconds(20)));
  etcd.stop(1);
  etcd.stop(2);
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(c.run_until([&] { return c.owners(0) == 0; }, std::chrono::seconds(10)));
  const auto stepped_down = std::chrono::steady_clock::now() - t0;
  INFO("stepped down after " << std::chrono::duration_cast<std::chrono::milliseconds>(stepped_down).count() << " ms");
  CHECK(stepped_down < std::chrono::seconds(6));  // renew deadline 3 s + a keepalive period, with room for a loaded machine
  for (const auto& r : c.replicas) CHECK(r->state() != Replica::State::owner);
  etcd.cont(1);
  etcd.cont(2);
  REQUIRE(c.run_until([&] { return c.owners(0) == 1; }, std::chrono::seconds(30)));
  c.run_until([] { return false; }, std::chrono::seconds(2));
  CHECK(c.owners(0) == 1);
}

TEST_CASE("the fenced intent on a real etcd: one action per service at a time, none under an old fence, finish only with its token", "[ha]") {
  TempDir dir;
  Etcd etcd(dir.path / "etcd");
  asio::io_context ioc;
  EtcdClient c(ioc.get_executor(), {etcd.endpoints()});
  const Keys keys("test");
  const auto lease = ok(run_sync(ioc, c.grant(std::chrono::seconds(5))));
  const auto won = ok(run_sync(ioc, c.txn(campaign(keys.owner(0), "a", lease.id))));
  REQUIRE(won.succeeded);

  FencedIntent first{"checkout", "a-1", 0, won.revision, lease.id, 0, R"({"from":"v2","to":"v1"})", R"({"budget":1})", std::nullopt, ""};
  const auto t1 = ok(run_sync(ioc, c.txn(intent_txn(keys, first))));
  REQUIRE(t1.succeeded);
  const std::int64_t token = t1.revision;
  // A second intent for the same service, even with a fresh read of the state: refused while a-1 is active.
  const auto state_now = ok(run_sync(ioc, c.range(keys.service_state("checkout"))));
  REQUIRE(state_now.kvs.size() == 1);
  FencedIntent second = first;
  second.action_id = "a-2";
  second.state_mod = state_now.kvs[0].mod_revision;
  const auto t2 = ok(run_sync(ioc, c.txn(intent_txn(keys, second))));
  CHECK_FALSE(t2.succeeded);
  REQUIRE(t2.ranges.size() == 3);
  CHECK(t2.ranges[1][0].value == "a-1");  // the failure says which action is active
  // Finishing needs the token: a wrong one changes nothing; the right one clears the marker.
  CHECK_FALSE(ok(run_sync(ioc, c.txn(finish_txn(keys, "checkout", "a-1", token - 1, R"({"ok":true})")))).succeeded);
  CHECK(ok(run_sync(ioc, c.txn(finish_txn(keys, "checkout", "a-1", token, R"({"ok":true})")))).succeeded);
  CHECK(ok(run_sync(ioc, c.range(keys.service_active("checkout")))).kvs.empty());
  // A decision made on a state that has changed since is refused: `first` was decided when the
  // service had no state yet, and a-1 wrote one.
  FencedIntent late = first;
  late.action_id = "a-2b";
  CHECK_FALSE(ok(run_sync(ioc, c.txn(intent_txn(keys, late)))).succeeded);

  // The owner's lease goes and another replica wins the shard: the old fence acts no more.
  CHECK(ok(run_sync(ioc, c.revoke(lease.id))));
  const auto lease_b = ok(run_sync(ioc, c.grant(std::chrono::seconds(5))));
  const auto won_b = ok(run_sync(ioc, c.txn(campaign(keys.owner(0), "b", lease_b.id))));
  REQUIRE(won_b.succeeded);
  const auto latest = ok(run_sync(ioc, c.range(keys.service_state("checkout")))).kvs.at(0).mod_revision;
  FencedIntent stale = first;
  stale.action_id = "a-3";
  stale.state_mod = latest;
  CHECK_FALSE(ok(run_sync(ioc, c.txn(intent_txn(keys, stale)))).succeeded);
  FencedIntent fresh = stale;
  fresh.action_id = "b-1";
  fresh.fence = won_b.revision;
  fresh.lease = lease_b.id;
  const auto tb = ok(run_sync(ioc, c.txn(intent_txn(keys, fresh))));
  REQUIRE(tb.succeeded);
  CHECK(tb.revision > token);  // tokens only grow across owners

  // Running: only under the owner's fence and lease, on the record as the intent wrote it.
  CHECK_FALSE(ok(run_sync(ioc, c.txn(running_txn(keys, stale, tb.revision, R"({"state":"running"})")))).succeeded);  // old owner
  CHECK_FALSE(ok(run_sync(ioc, c.txn(running_txn(keys, fresh, tb.revision - 1, R"({"state":"running"})")))).succeeded);
  const auto tr = ok(run_sync(ioc, c.txn(running_txn(keys, fresh, tb.revision, R"({"state":"running"})"))));
  REQUIRE(tr.succeeded);
  // The finish now needs the running record's revision; the intent's no longer does.
  CHECK_FALSE(ok(run_sync(ioc, c.txn(finish_txn(keys, "checkout", "b-1", tb.revision, R"({"state":"done"})")))).succeeded);
  CHECK(ok(run_sync(ioc, c.txn(finish_txn(keys, "checkout", "b-1", tr.revision, R"({"state":"done"})")))).succeeded);

  // An intent that never ran: closed with the state's `last` removed (no cooldown spent).
  FencedIntent never = fresh;
  never.action_id = "b-2";
  never.state_mod = ok(run_sync(ioc, c.range(keys.service_state("checkout")))).kvs.at(0).mod_revision;
  never.state = R"({"last":{"action_id":"b-2"}})";
  const auto tn = ok(run_sync(ioc, c.txn(intent_txn(keys, never))));
  REQUIRE(tn.succeeded);
  const auto st = ok(run_sync(ioc, c.range(keys.service_state("checkout")))).kvs.at(0);
  CHECK_FALSE(ok(run_sync(ioc, c.txn(never_ran_txn(keys, "checkout", "b-2", tn.revision, R"({"state":"never_ran"})", st.mod_revision - 1, "{}"))))
                  .succeeded);  // the state changed since it was read
  CHECK(ok(run_sync(ioc, c.txn(never_ran_txn(keys, "checkout", "b-2", tn.revision, R"({"state":"never_ran"})", st.mod_revision, "{}")))).succeeded);
  CHECK(ok(run_sync(ioc, c.range(keys.service_state("checkout")))).kvs.at(0).value == "{}");
  CHECK(ok(run_sync(ioc, c.range(keys.service_active("checkout")))).kvs.empty());
}

TEST_CASE("a watch on a real etcd streams puts and deletes as they happen, from a revision, and says when it is compacted", "[ha]") {
  TempDir dir;
  Etcd etcd(dir.path / "etcd");
  asio::io_context ioc;
  EtcdClient c(ioc.get_executor(), {etcd.endpoints()});
  const Keys keys("test");
  auto soon = [] { return std::chrono::steady_clock::now() + std::chrono::seconds(5); };
  EtcdWatch w(ioc.get_executor(), etcd.endpoints()[0]);
  REQUIRE(ok(run_sync(ioc, w.start(keys.prefix() + "shard/", true, 0, soon()))));

  Txn put;
  put.success.push_back(Op::put(keys.owner(0), "a"));
  const auto rev = ok(run_sync(ioc, c.txn(put))).revision;
  auto b = ok(run_sync(ioc, w.next(soon())));
  REQUIRE(b.events.size() == 1);
  CHECK(b.events[0].type == WatchEvent::Type::put);
  CHECK(b.events[0].kv.key == keys.owner(0));
  CHECK(b.events[0].kv.value == "a");
  CHECK(b.events[0].kv.mod_revision == rev);

  Txn del;
  del.success.push_back(Op::del(keys.owner(0)));
  ok(run_sync(ioc, c.txn(del)));
  b = ok(run_sync(ioc, w.next(soon())));
  REQUIRE(b.events.size() == 1);
  CHECK(b.events[0].type == WatchEvent::Type::del);  // an owner key gone: campaign now, without waiting for `retry`

  // Nothing happens: the read ends at its deadline as "unavailable", never hangs.
  auto quiet = run_sync(ioc, w.next(std::chrono::steady_clock::now() + std::chrono::milliseconds(300)));
  REQUIRE(std::holds_alternative<EtcdError>(quiet));
  CHECK(std::get<EtcdError>(quiet).unavailable);

  // A new watch from the put's revision replays both events.
  EtcdWatch from(ioc.get_executor(), etcd.endpoints()[0]);
  REQUIRE(ok(run_sync(ioc, from.start(keys.owner(0), false, rev, soon()))));
  std::vector<WatchEvent> seen;
  while (seen.size() < 2) {
    auto more = ok(run_sync(ioc, from.next(soon())));
    for (auto& e : more.events) seen.push_back(e);
  }
  CHECK(seen[0].type == WatchEvent::Type::put);
  CHECK(seen[1].type == WatchEvent::Type::del);
}
