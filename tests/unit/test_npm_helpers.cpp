// Pure helpers of the npm kinds and templating: no sockets.
#include <catch2/catch.hpp>

#include "actions/action.hpp"
#include "actions/firebase_release.hpp"
#include "net/http_once.hpp"
#include "net/npm.hpp"
#include "net/time.hpp"

using namespace lastgood;

TEST_CASE("scoped npm names are escaped the way the registry wants them", "[npm]") {
  CHECK(net::npm_escape("demo-pkg") == "demo-pkg");
  CHECK(net::npm_escape("@scope/name") == "@scope%2fname");
}

TEST_CASE("RFC 3339 times from npm and Firebase parse, with fractions and offsets", "[npm]") {
  auto a = net::parse_rfc3339("2026-11-25T22:35:11.364Z");
  auto b = net::parse_rfc3339("2026-11-25T23:35:11.364+01:00");
  REQUIRE(a);
  REQUIRE(b);
  CHECK(*a == *b);
  CHECK(std::chrono::duration_cast<std::chrono::milliseconds>(a->time_since_epoch()).count() % 1000 == 364);
  CHECK_FALSE(net::parse_rfc3339("yesterday"));
  // A registry that lies: a bad offset is no time, never an exception.
  CHECK_NOTHROW(net::parse_rfc3339("2026-11-25T23:35:11+ab:cd"));
  CHECK_FALSE(net::parse_rfc3339("2026-11-25T23:35:11+ab:cd"));
  CHECK_FALSE(net::parse_rfc3339("2026-11-25T23:35:11.999999999999999999999-1x:00"));
  // Years the clock cannot hold (found by fuzz/fuzz_url: "20" was year 20, and the conversion overflowed).
  CHECK_FALSE(net::parse_rfc3339("20"));
  CHECK_FALSE(net::parse_rfc3339("0020-01-01T00:00:00Z"));
  CHECK_FALSE(net::parse_rfc3339("9999-01-01T00:00:00Z"));
}

TEST_CASE("tarball integrity: sha512 first, shasum as the fallback", "[npm]") {
  const std::string tgz = "hello";
  // sha512("hello") and sha1("hello"), as npm writes them.
  nlohmann::json good{{"integrity", "sha512-m3HSJL1i83hdltRq0+o9czGb+8KJDKra4t/3JRlnPKcjI8PZm6XBHXx6zG4UuMXaDEZjR1wuXDre9G9zvN7AQw=="},
                      {"shasum", "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"}};
  CHECK(net::check_integrity(tgz, good).empty());
  CHECK_THAT(net::check_integrity("hellO", good), Catch::Contains("does not match dist.integrity"));
  nlohmann::json sha1_only{{"shasum", "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"}};
  CHECK(net::check_integrity(tgz, sha1_only).empty());
  CHECK_THAT(net::check_integrity("x", sha1_only), Catch::Contains("does not match dist.shasum"));
  CHECK_THAT(net::check_integrity(tgz, nlohmann::json::object()), Catch::Contains("neither"));
}

TEST_CASE("templates expand the rollback's variables, percent-encoded in URLs", "[actions]") {
  actions::Plan p{"v2", "v1", {"my svc", "down", "3 failures"}, {}};
  CHECK(actions::expand("${service}:${from}->${to} (${trigger}: ${reason})", p) == "my svc:v2->v1 (down: 3 failures)");
  CHECK(actions::expand("/v1/services/${service}?to=${to}", p, true) == "/v1/services/my%20svc?to=v1");
  CHECK(actions::expand("$HOME ${unknown}", p) == "$HOME ${unknown}");
}

TEST_CASE("release names that could escape a folder or a shell are refused", "[actions]") {
  for (const char* ok : {"v1", "2026-11-25_1", "1.2.3+build.4", "release@abc"}) CHECK(actions::valid_release_name(ok));
  for (const char* bad : {"", "..", "../x", "a/b", "a b", "$(id)", "a;b", "-rf", "x`y`"}) CHECK_FALSE(actions::valid_release_name(bad));
}

TEST_CASE("base64url has no padding and uses - and _", "[actions]") {
  CHECK(actions::base64url(std::string("\xfb\xff", 2)) == "-_8");
  CHECK(actions::base64url("a") == "YQ");
}
