// etcd's JSON gateway forms (ha.md): base64 keys and values, int64s as strings, fields with
// default values omitted; and answers that lie or are garbage are errors, never crashes.
#include <catch2/catch.hpp>

#include "watchdog/ha/etcd.hpp"
#include "watchdog/ha/watch.hpp"

using namespace lastgood::watchdog::ha;
using nlohmann::json;

TEST_CASE("base64 round-trips every byte; anything else is refused", "[etcd]") {
  for (const std::string& s : {std::string(), std::string("a"), std::string("ab"), std::string("abc"), std::string("/lastgood/prod/shard/0/owner"),
                              std::string("\0\xff\x80 z", 5)}) {
    INFO(s);
    auto back = unbase64(base64(s));
    REQUIRE(back);
    CHECK(*back == s);
  }
  CHECK(base64("/a") == "L2E=");
  CHECK_FALSE(unbase64("L2E"));    // not a multiple of 4
  CHECK_FALSE(unbase64("L2$="));   // not base64
}

TEST_CASE("a prefix's range end is the prefix with its last byte increased", "[etcd]") {
  CHECK(prefix_end("/lastgood/prod/") == "/lastgood/prod0");
  CHECK(prefix_end("a\xff") == "b");
  CHECK(prefix_end("") == std::string(1, '\0'));
}

TEST_CASE("a campaign transaction in the gateway's JSON", "[etcd]") {
  Txn t;
  t.compare.push_back({"/lastgood/prod/shard/0/owner", Compare::Target::create, Compare::Result::equal, 0, ""});
  t.compare.push_back({"/k", Compare::Target::value, Compare::Result::not_equal, 0, "v"});
  t.success.push_back(Op::put("/lastgood/prod/shard/0/owner", "a", 7587821338341002662));
  t.failure.push_back(Op::range("/lastgood/prod/shard/0/owner"));
  t.failure.push_back(Op::del("/lastgood/prod/", true));
  const json j = EtcdClient::txn_json(t);
  CHECK(j["compare"][0] == json{{"key", base64("/lastgood/prod/shard/0/owner")}, {"target", "CREATE"}, {"result", "EQUAL"}, {"create_revision", "0"}});
  CHECK(j["compare"][1]["value"] == base64("v"));
  CHECK(j["compare"][1]["result"] == "NOT_EQUAL");
  CHECK(j["success"][0]["request_put"]["lease"] == "7587821338341002662");  // int64 as a string
  CHECK(j["success"][0]["request_put"]["value"] == base64("a"));
  CHECK(j["failure"][0].contains("request_range"));
  CHECK(j["failure"][1]["request_delete_range"]["range_end"] == base64("/lastgood/prod0"));
}

TEST_CASE("answers: a failed transaction has no 'succeeded', revisions are strings", "[etcd]") {
  const json lost = json::parse(R"({"header":{"cluster_id":"1","member_id":"2","revision":"42","raft_term":"3"},
    "responses":[{"response_range":{"header":{"revision":"42"},"kvs":[{"key":")" + base64("/o") + R"(","create_revision":"40",
    "mod_revision":"40","version":"1","value":")" + base64("b http://127.0.0.1:9464") + R"(","lease":"99"}],"count":"1"}}]})");
  auto r = EtcdClient::parse_txn(lost);
  REQUIRE(std::holds_alternative<TxnResult>(r));
  const auto& t = std::get<TxnResult>(r);
  CHECK_FALSE(t.succeeded);
  CHECK(t.revision == 42);
  REQUIRE(t.ranges.size() == 1);
  REQUIRE(t.ranges[0].size() == 1);
  CHECK(t.ranges[0][0].value == "b http://127.0.0.1:9464");
  CHECK(t.ranges[0][0].create_revision == 40);
  CHECK(t.ranges[0][0].lease == 99);

  auto empty = EtcdClient::parse_range(json::parse(R"({"header":{"revision":"7"}})"));  // no kvs: none
  REQUIRE(std::holds_alternative<RangeResult>(empty));
  CHECK(std::get<RangeResult>(empty).kvs.empty());
  CHECK(std::get<RangeResult>(empty).revision == 7);
}

TEST_CASE("an answer that lies about types is an error naming what, not a crash", "[etcd]") {
  const char* lies[] = {
      R"({})",                                                              // no header
      R"({"header":{"revision":"x"}})",                                     // not a number
      R"({"header":{"revision":"1"},"succeeded":"yes"})",                   // not a boolean
      R"({"header":{"revision":"1"},"responses":{}})",                      // not an array
      R"({"header":{"revision":"1"},"responses":[{"response_range":{"kvs":[{"key":"!!"}]}}]})",  // not base64
      R"({"header":{"revision":"1"},"responses":[{"response_range":{"kvs":[{"key":"L2E=","version":[1]}]}}]})",
      R"({"header":{"revision":"99999999999999999999"}})",                  // out of int64
  };
  for (const char* l : lies) {
    INFO(l);
    auto r = EtcdClient::parse_txn(json::parse(l));
    REQUIRE(std::holds_alternative<EtcdError>(r));
    CHECK_FALSE(std::get<EtcdError>(r).unavailable);  // etcd answered: not "unreachable"
    CHECK_THAT(std::get<EtcdError>(r).message, Catch::StartsWith("etcd's answer is malformed"));
  }
}

TEST_CASE("watch messages: events, a compaction, and lies", "[etcd]") {
  auto ev = EtcdWatch::parse_message(json::parse(R"({"result":{"header":{"revision":"12"},"events":[{"type":"DELETE","kv":{"key":")" +
                                                 base64("/k") + R"(","mod_revision":"12"}},{"kv":{"key":")" + base64("/j") +
                                                 R"(","value":")" + base64("v") + R"(","mod_revision":"12"}}]}})"));
  REQUIRE(std::holds_alternative<WatchBatch>(ev));
  const auto& b = std::get<WatchBatch>(ev);
  CHECK(b.revision == 12);
  REQUIRE(b.events.size() == 2);
  CHECK(b.events[0].type == WatchEvent::Type::del);  // "type" is omitted for PUT (its default)
  CHECK(b.events[1].type == WatchEvent::Type::put);
  CHECK(b.events[1].kv.value == "v");
  auto compacted = EtcdWatch::parse_message(json::parse(R"({"result":{"header":{"revision":"90"},"canceled":true,"compact_revision":"50"}})"));
  REQUIRE(std::holds_alternative<WatchBatch>(compacted));
  CHECK(std::get<WatchBatch>(compacted).canceled);
  CHECK(std::get<WatchBatch>(compacted).compact_revision == 50);
  for (const char* lie : {R"({"result":7})", R"({"result":{"events":{}}})", R"({"result":{"events":[{"type":"PUT"}]}})",
                          R"({"result":{"events":[{"kv":{"key":"%%%%"}}]}})", R"({"result":{"canceled":"yes"}})",
                          R"({"result":{"header":{"revision":[1]}}})", R"({"result":{"events":[{"type":1,"kv":{"key":"L2E="}}]}})", R"([1])"}) {
    INFO(lie);
    CHECK(std::holds_alternative<EtcdError>(EtcdWatch::parse_message(json::parse(lie))));
  }
}
