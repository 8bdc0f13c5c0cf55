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
#include <unordered_set>

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

// An owner's lifetime as the work it starts sees it: the one idiom for async lifetime in
// lastgood. The owner holds a Lifetime; a handler or coroutine that may outlive the owner keeps a
// watch() and touches the owner only while the watch has not expired. end() (called by the
// owner's stop(), or its destruction) expires every watch and cancels every coroutine spawned
// under it (terminal cancellation: its pending I/O and timers complete with operation_aborted and
// it unwinds), so that a shutdown leaves nothing running on a stale `this`.
class Lifetime {
 public:
  using Watch = std::weak_ptr<const void>;
  Lifetime();
  ~Lifetime() { end(); }
  Lifetime(const Lifetime&) = delete;
  Lifetime& operator=(const Lifetime&) = delete;

  Watch watch() const { return state_; }
  bool ended() const { return !state_; }
  // Coroutines spawned under this lifetime that have not finished.
  std::size_t running() const;
  void end();

  struct State;  // spawn's record of what runs under the lifetime

 private:
  friend void spawn(boost::asio::any_io_executor, std::function<boost::asio::awaitable<void>()>, const char*, Lifetime&, Restart,
                    std::chrono::milliseconds);
  friend void spawn(const boost::asio::any_io_executor&, boost::asio::awaitable<void>, const char*, Lifetime&);
  std::shared_ptr<State> state_;
};

// Runs make() detached on ex, under `owner` (cancelled by owner.end()). An exception is logged and
// counted (note_internal_error). With Restart::yes, a coroutine that ends with an exception is
// made and started again after `backoff` (1 s by default) while the owner lives: a loop that must
// go on (observing a deployment) survives a bug in one of its turns.
void spawn(boost::asio::any_io_executor ex, std::function<boost::asio::awaitable<void>()> make, const char* where, Lifetime& owner,
           Restart restart = Restart::no, std::chrono::milliseconds backoff = std::chrono::seconds(1));
// The same for a coroutine already made, never restarted (one probe run: no std::function).
void spawn(const boost::asio::any_io_executor& ex, boost::asio::awaitable<void> aw, const char* where, Lifetime& owner);

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
