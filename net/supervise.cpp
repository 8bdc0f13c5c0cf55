#include "net/supervise.hpp"

#include <chrono>
#include <map>
#include <mutex>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

namespace lastgood::net {

namespace asio = boost::asio;

namespace {

std::mutex mu;
InternalErrorSink sink;
std::atomic<std::uint64_t> total{0};
struct LogState {
  std::chrono::steady_clock::time_point last{};
  std::uint64_t suppressed = 0;
};
std::map<std::string, LogState> log_state;

}  // namespace

void set_internal_error_sink(InternalErrorSink s) {
  std::lock_guard lock(mu);
  sink = std::move(s);
}

std::uint64_t internal_errors() { return total.load(); }

void count_internal_error(const char* where) {
  total.fetch_add(1);
  InternalErrorSink s;
  {
    std::lock_guard lock(mu);
    s = sink;
  }
  if (s) {
    try {
      s(where);
    } catch (...) {
    }
  }
}

void note_internal_error(const char* where, const std::string& what) {
  total.fetch_add(1);
  InternalErrorSink s;
  std::uint64_t suppressed = 0;
  bool log = false;
  {
    std::lock_guard lock(mu);
    s = sink;
    auto& st = log_state[where];
    const auto now = std::chrono::steady_clock::now();
    if (now - st.last >= std::chrono::seconds(1)) {
      log = true;
      suppressed = st.suppressed;
      st.suppressed = 0;
      st.last = now;
    } else {
      ++st.suppressed;
    }
  }
  if (log) {
    if (suppressed) spdlog::error("internal error in {}: {} ({} more in the last second not logged)", where, what, suppressed);
    else spdlog::error("internal error in {}: {} (counted in lastgood_internal_errors_total; lastgood goes on)", where, what);
  }
  if (s) {
    try {
      s(where);
    } catch (...) {
    }
  }
}

namespace {

using Make = std::function<asio::awaitable<void>()>;

// The coroutine made by a lambda refers to the lambda object (its captures); the object must
// stay where it is until the coroutine ends. std::function keeps small lambdas inside itself, so
// moving it would move them: it is held by a shared_ptr instead and never moved once called.
void spawn_held(asio::any_io_executor ex, std::shared_ptr<Make> make, const char* where, Restart restart,
                std::weak_ptr<void> alive, std::chrono::milliseconds backoff) {
  asio::awaitable<void> aw;
  try {
    aw = (*make)();
  } catch (const std::exception& e) {
    note_internal_error(where, e.what());
    return;
  }
  asio::co_spawn(ex, std::move(aw), [ex, make, where, restart, alive, backoff](std::exception_ptr ep) {
    if (!ep) return;
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      note_internal_error(where, e.what());
    } catch (...) {
      note_internal_error(where, "unknown exception");
    }
    if (restart == Restart::no || alive.expired()) return;
    auto timer = std::make_shared<asio::steady_timer>(ex, backoff);
    timer->async_wait([timer, ex, make, where, alive, backoff](boost::system::error_code ec) {
      if (ec || alive.expired()) return;
      spdlog::warn("{}: restarted after an internal error", where);
      spawn_held(ex, make, where, Restart::yes, alive, backoff);
    });
  });
}

}  // namespace

void spawn(asio::any_io_executor ex, Make make, const char* where, Restart restart, std::weak_ptr<void> alive,
           std::chrono::milliseconds backoff) {
  spawn_held(std::move(ex), std::make_shared<Make>(std::move(make)), where, restart, std::move(alive), backoff);
}

}  // namespace lastgood::net
