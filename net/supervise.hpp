#pragma once
// One supervised spawn for every detached coroutine and callback (design.md, Data flow): an
// exception is logged (at most once a second per place), counted as
// lastgood_internal_errors_total{where}, and the loop it belonged to goes on. Nothing that
// lastgood runs in the background may end in silence.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

namespace lastgood::net {

// Where internal errors are counted (the watchdog's metrics); without one they are only logged.
using InternalErrorSink = std::function<void(const char* where)>;
void set_internal_error_sink(InternalErrorSink sink);
// Logs (rate-limited per `where`) and counts one internal error.
void note_internal_error(const char* where, const std::string& what);
// Counts one internal error without logging it (the caller logs it its own way).
void count_internal_error(const char* where);
// Internal errors noted since the start (all places), for tests and /readyz.
std::uint64_t internal_errors();

enum class Restart { no, yes };

// Runs make() detached on ex. With Restart::yes, a coroutine that ends with an exception is made
// and started again after `backoff` (1 s by default) while `alive` has not expired: a loop that
// must go on (observing a deployment) survives a bug in one of its turns. `alive` is required
// for a restart (its owner's lifetime); without it nothing is restarted.
void spawn(boost::asio::any_io_executor ex, std::function<boost::asio::awaitable<void>()> make, const char* where,
           Restart restart = Restart::no, std::weak_ptr<void> alive = {},
           std::chrono::milliseconds backoff = std::chrono::seconds(1));

// Runs f() and notes anything it throws instead of letting it escape an Asio handler.
template <typename F>
void guarded(const char* where, F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& ex) {
    note_internal_error(where, ex.what());
  } catch (...) {
    note_internal_error(where, "unknown exception");
  }
}

// A flag held across co_await: set for the guard's life, cleared however the scope ends.
class FlagGuard {
 public:
  explicit FlagGuard(bool& flag) : flag_(flag) { flag_ = true; }
  ~FlagGuard() { flag_ = false; }
  FlagGuard(const FlagGuard&) = delete;
  FlagGuard& operator=(const FlagGuard&) = delete;

 private:
  bool& flag_;
};

}  // namespace lastgood::net
