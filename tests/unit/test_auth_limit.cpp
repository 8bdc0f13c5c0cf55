// Failed authentications per (client, presented token) and per client; X-Forwarded-For only from
// trusted proxies. A fake clock; no sockets.
#include <catch2/catch.hpp>

#include "watchdog/api/auth_limit.hpp"

using lastgood::watchdog::AuthLimiter;
using lastgood::watchdog::client_address;
using namespace std::chrono_literals;

TEST_CASE("failures are counted per (client, token): others' failures never block a token, a client is bounded overall", "[auth]") {
  AuthLimiter lim;
  auto t = AuthLimiter::Clock::time_point{} + 1h;
  for (int i = 0; i < 10; ++i) {
    CHECK_FALSE(lim.blocked("10.0.0.1", "", t));
    lim.failed("10.0.0.1", "", t);
  }
  CHECK(lim.blocked("10.0.0.1", "", t));              // no token, ten times: 429
  CHECK_FALSE(lim.blocked("10.0.0.1", "Bearer x", t));  // another credential from the same address
  CHECK_FALSE(lim.blocked("10.0.0.2", "", t));          // another address
  CHECK_FALSE(lim.blocked("10.0.0.1", "", t + 61s));    // a minute later

  // Guessing: a new token each time is still bounded per client.
  AuthLimiter guess;
  int refused = 0;
  for (int i = 0; i < 150; ++i) {
    const std::string tok = "Bearer guess-" + std::to_string(i);
    if (guess.blocked("10.0.0.9", tok, t)) ++refused;
    else guess.failed("10.0.0.9", tok, t);
  }
  CHECK(refused == 50);

  // Memory stays bounded however many clients fail.
  AuthLimiter many(AuthLimiter::Limits{10, 100, 1min, 100});
  for (int i = 0; i < 10'000; ++i) many.failed("c" + std::to_string(i), "", t);
  CHECK_FALSE(many.blocked("c0", "", t));
}

TEST_CASE("X-Forwarded-For names the client only when the peer is a trusted proxy", "[auth]") {
  const std::vector<std::string> proxies{"10.0.0.5", "10.0.0.6"};
  CHECK(client_address("192.0.2.7:5123", "", proxies) == "192.0.2.7");
  CHECK(client_address("192.0.2.7:5123", "203.0.113.9", proxies) == "192.0.2.7");  // not a proxy: the header is ignored
  CHECK(client_address("10.0.0.5:4000", "203.0.113.9", proxies) == "203.0.113.9");
  CHECK(client_address("10.0.0.5:4000", "198.51.100.1, 203.0.113.9, 10.0.0.6", proxies) == "203.0.113.9");  // rightmost untrusted
  CHECK(client_address("10.0.0.5:4000", " , ", proxies) == "10.0.0.5");
  CHECK(client_address("::1:4000", "", {}) == "::1");
}
