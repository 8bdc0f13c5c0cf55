// Silences and maintenance windows, and releases marked bad, on a fake clock.
#include <catch2/catch.hpp>

#include "policy/deployment.hpp"
#include "watchdog/pipeline/clock.hpp"
#include "watchdog/state/silences.hpp"

using namespace lastgood;
using namespace lastgood::watchdog;
using namespace std::chrono_literals;

namespace {
const policy::TimePoint t0 = policy::TimePoint{} + std::chrono::hours(24 * 365 * 56);

Silence make(const std::string& id, std::vector<std::string> services, policy::TimePoint start, policy::Duration length, std::string by = "alice") {
  Silence s;
  s.id = id;
  s.services = std::move(services);
  s.starts_at = start;
  s.ends_at = start + length;
  s.by = std::move(by);
  s.comment = "deploy window";
  return s;
}
}  // namespace

TEST_CASE("a silence holds its services from start to end, the one ending last wins, and a person may end it early", "[silences]") {
  Silences s;
  s.add(make("s1", {"www", "api"}, t0, 1h));
  s.add(make("s2", {"www"}, t0, 2h, "bob"));
  CHECK(s.active("www", t0 - 1s) == nullptr);
  REQUIRE(s.active("www", t0));
  CHECK(s.active("www", t0 + 30min)->id == "s2");  // ends last
  CHECK(s.active("api", t0 + 30min)->id == "s1");
  CHECK(s.active("db", t0 + 30min) == nullptr);
  CHECK(s.active("api", t0 + 1h) == nullptr);  // ends on time (end excluded)
  CHECK(s.expire("s2", "carol", t0 + 10min));
  CHECK(s.active("www", t0 + 10min)->id == "s1");
  CHECK_FALSE(s.expire("s2", "carol", t0 + 11min));  // once
  CHECK_FALSE(s.expire("nope", "carol", t0));
  const auto list = s.list(t0 + 10min);
  REQUIRE(list.size() == 2);
  CHECK(list[0]["id"] == "s1");
  CHECK(list[0]["state"] == "active");
  CHECK(list[1]["state"] == "ended");
  CHECK(list[1]["expired_by"] == "carol");
  CHECK(list[1]["ends_at"] == format_time(t0 + 2h));
}

TEST_CASE("maintenance windows come from the config: upcoming, then active; not ended over the API; replaced on reload", "[silences]") {
  Silences s;
  std::vector<Silence> w;
  w.push_back(make("maintenance-0", {"www"}, t0 + 1h, 2h, "config"));
  s.set_maintenance(w);
  CHECK(s.active("www", t0) == nullptr);
  CHECK(s.list(t0)[0]["state"] == "pending");
  CHECK(s.active("www", t0 + 90min));
  CHECK(s.list(t0 + 90min)[0]["source"] == "config");
  CHECK_FALSE(s.expire("maintenance-0", "alice", t0 + 90min));
  s.set_maintenance({});
  CHECK(s.active("www", t0 + 90min) == nullptr);
}

TEST_CASE("silences come back from the ledger: added, expired", "[silences]") {
  Silences s;
  LedgerEntry add;
  add.ts_ms = ms(t0);
  add.type = "silence_added";
  add.data = {{"id", "s1"}, {"services", {"www"}}, {"starts_at", ms(t0)}, {"ends_at", ms(t0 + 1h)}, {"by", "alice"}, {"comment", "c"}};
  s.replay(Event::silence_added, add);
  CHECK(s.active("www", t0 + 1min));
  LedgerEntry ex;
  ex.ts_ms = ms(t0 + 5min);
  ex.type = "silence_expired";
  ex.data = {{"id", "s1"}, {"by", "bob"}};
  s.replay(Event::silence_expired, ex);
  CHECK(s.active("www", t0 + 6min) == nullptr);
  // Garbage in an entry is not a crash (wrong types are read as absent).
  LedgerEntry bad;
  bad.ts_ms = ms(t0);
  bad.data = {{"id", 7}, {"services", "www"}, {"ends_at", "soon"}};
  s.replay(Event::silence_added, bad);
  CHECK(s.active("www", t0 + 1min) == nullptr);
}

TEST_CASE("a release marked bad is never the rollback target or the last good release", "[deployment]") {
  policy::DeploymentTracker d;
  for (const char* id : {"v1", "v2", "v3"}) {
    d.observe(id, std::nullopt, t0, false);
    d.mark_good(id, t0 + std::chrono::minutes(id[1] - '0'));
  }
  REQUIRE(d.rollback_target());
  CHECK(d.rollback_target()->id == "v2");
  d.mark_bad("v2", {"alice", "corrupts carts", t0});
  CHECK(d.rollback_target()->id == "v1");
  CHECK(d.last_good()->id == "v3");
  d.mark_bad("v3", {"bob", "same bug", t0});
  CHECK(d.last_good()->id == "v1");
  d.mark_bad("v1", {"bob", "old", t0});
  CHECK(d.rollback_target() == nullptr);
  // A release marked bad before it is ever seen stays bad when it shows up.
  d.mark_bad("v9", {"carol", "known broken build", t0});
  d.observe("v9", std::nullopt, t0 + 1h, false);
  CHECK(d.bad("v9"));
  REQUIRE(d.bad("v2"));
  CHECK(d.bad("v2")->by == "alice");
}
