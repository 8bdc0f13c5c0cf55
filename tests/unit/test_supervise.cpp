// The supervised spawn: a throw in a detached coroutine is counted and logged, a loop that must
// go on is restarted, a flag held across co_await is cleared however the coroutine ends.
// No sockets: an io_context with timers only.
#include <catch2/catch.hpp>

#include <map>
#include <stdexcept>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "net/supervise.hpp"

namespace asio = boost::asio;
using namespace lastgood;

namespace {

struct Counted {
  std::map<std::string, int> by_where;
  Counted() {
    net::set_internal_error_sink([this](const char* w) { ++by_where[w]; });
  }
  ~Counted() { net::set_internal_error_sink({}); }
};

}  // namespace

TEST_CASE("a throw in a detached coroutine is counted by place, and the loop is not taken down", "[supervise]") {
  Counted counted;
  asio::io_context ioc;
  net::Lifetime life;
  int after = 0;
  net::spawn(ioc.get_executor(), []() -> asio::awaitable<void> {
    co_await asio::post(asio::use_awaitable);
    throw std::runtime_error("boom");
  }, "decide", life);
  net::spawn(ioc.get_executor(), [&]() -> asio::awaitable<void> {
    co_await asio::post(asio::use_awaitable);
    ++after;
  }, "observe", life);
  REQUIRE_NOTHROW(ioc.run());
  CHECK(counted.by_where["decide"] == 1);
  CHECK(after == 1);
}

TEST_CASE("a loop spawned with Restart::yes is started again after a throw, while its owner lives", "[supervise]") {
  Counted counted;
  asio::io_context ioc;
  net::Lifetime owner;
  int runs = 0;
  net::spawn(ioc.get_executor(), [&]() -> asio::awaitable<void> {
    ++runs;
    co_await asio::post(asio::use_awaitable);
    if (runs < 3) throw std::runtime_error("turn " + std::to_string(runs));
  }, "observe", owner, net::Restart::yes, std::chrono::milliseconds(1));
  ioc.run();
  CHECK(runs == 3);
  CHECK(counted.by_where["observe"] == 2);

  // Once the owner is gone nothing is restarted.
  runs = 0;
  net::Lifetime gone;
  net::spawn(ioc.get_executor(), [&]() -> asio::awaitable<void> {
    ++runs;
    co_await asio::post(asio::use_awaitable);
    throw std::runtime_error("always");
  }, "observe", gone, net::Restart::yes, std::chrono::milliseconds(1));
  gone.end();
  ioc.restart();
  ioc.run();
  CHECK(runs == 1);
}

TEST_CASE("a flag held across co_await is cleared when the coroutine throws", "[supervise]") {
  Counted counted;
  asio::io_context ioc;
  net::Lifetime life;
  bool acting = false;
  net::spawn(ioc.get_executor(), [&]() -> asio::awaitable<void> {
    net::FlagGuard g(acting);
    co_await asio::post(asio::use_awaitable);
    CHECK(acting);
    throw std::runtime_error("mid-action");
  }, "rollback", life);
  ioc.run();
  CHECK_FALSE(acting);
  CHECK(counted.by_where["rollback"] == 1);
}

TEST_CASE("ending a lifetime cancels what runs under it, quietly, and starts nothing new; another lifetime's work goes on", "[supervise]") {
  Counted counted;
  asio::io_context ioc;
  net::Lifetime stopping, staying;
  bool unwound = false, other_done = false, late_started = false;
  auto watch = stopping.watch();
  net::spawn(ioc.get_executor(), [&]() -> asio::awaitable<void> {
    net::FlagGuard g(unwound);  // set while waiting; cleared as the frame unwinds
    asio::steady_timer t(ioc, std::chrono::hours(1));
    co_await t.async_wait(asio::use_awaitable);  // throws operation_aborted when cancelled
  }, "observe", stopping);
  net::spawn(ioc.get_executor(), [&]() -> asio::awaitable<void> {
    asio::steady_timer t(ioc, std::chrono::milliseconds(20));
    co_await t.async_wait(asio::use_awaitable);
    other_done = true;
  }, "rollback", staying);
  ioc.poll();
  CHECK(unwound);
  CHECK(stopping.running() == 1);
  stopping.end();
  CHECK(watch.expired());
  net::spawn(ioc.get_executor(), [&]() -> asio::awaitable<void> {
    late_started = true;
    co_return;
  }, "observe", stopping);
  ioc.run();  // returns: the hour-long wait was cancelled
  CHECK_FALSE(unwound);
  CHECK_FALSE(late_started);
  CHECK(other_done);
  CHECK(staying.running() == 0);
  CHECK(counted.by_where.empty());  // a cancellation at the end is not an internal error
}

TEST_CASE("guarded() keeps an exception from escaping a handler", "[supervise]") {
  Counted counted;
  const auto before = net::internal_errors();
  net::guarded("tick", [] { throw std::logic_error("bug"); });
  CHECK(net::internal_errors() == before + 1);
  CHECK(counted.by_where["tick"] == 1);
}
