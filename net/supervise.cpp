#include "net/supervise.hpp"

#include <chrono>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
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

struct Lifetime::State {
  struct Running {
    std::weak_ptr<asio::cancellation_signal> signal;  // expires when the coroutine has finished
    asio::any_io_executor ex;
  };
  std::unordered_map<asio::cancellation_signal*, Running> running;
};

Lifetime::Lifetime() : state_(std::make_shared<State>()) {}

std::size_t Lifetime::running() const { return state_ ? state_->running.size() : 0; }

void Lifetime::end() {
  if (!state_) return;
  const auto st = std::move(state_);  // watches expire when st goes
  // Emitted on each coroutine's own executor: co_spawn forwards a cancellation with dispatch(), so
  // from outside the loop it would post a reference into the coroutine's state, which a
  // coroutine finishing first would leave dangling. On the loop, the forwarding runs inline; a
  // coroutine that finished meanwhile has let its signal go, and is skipped.
  std::vector<State::Running> running;
  for (const auto& [ptr, r] : st->running) running.push_back(r);
  for (auto& r : running)
    asio::dispatch(r.ex, [w = r.signal] {
      if (auto sig = w.lock()) sig->emit(asio::cancellation_type::terminal);
    });
}

namespace {

using Make = std::function<asio::awaitable<void>()>;

// Runs aw under the lifetime whose state is st: cancelled by its end(), what it throws noted
// (a cancellation after the end is the expected way out, not an error); then after_error() when
// it ended with an error.
template <typename AfterError>
void run_under(const asio::any_io_executor& ex, asio::awaitable<void> aw, const char* where, const std::shared_ptr<Lifetime::State>& st,
               AfterError after_error) {
  // The signal lives as long as the completion handler (the coroutine's whole run).
  auto sig = std::make_shared<asio::cancellation_signal>();
  st->running.emplace(sig.get(), Lifetime::State::Running{sig, ex});
  std::weak_ptr<Lifetime::State> owner = st;
  asio::co_spawn(ex, std::move(aw),
                 asio::bind_cancellation_slot(sig->slot(), [where, owner, sig, after_error = std::move(after_error)](std::exception_ptr ep) {
                   if (auto live = owner.lock()) live->running.erase(sig.get());
                   if (!ep) return;
                   try {
                     std::rethrow_exception(ep);
                   } catch (const boost::system::system_error& e) {
                     if (e.code() == asio::error::operation_aborted && owner.expired()) return;
                     note_internal_error(where, e.what());
                   } catch (const std::exception& e) {
                     note_internal_error(where, e.what());
                   } catch (...) {
                     note_internal_error(where, "unknown exception");
                   }
                   after_error(owner);
                 }));
}

// The coroutine made by a lambda refers to the lambda object (its captures); the object must
// stay where it is until the coroutine ends. std::function keeps small lambdas inside itself, so
// moving it would move them: it is held by a shared_ptr instead and never moved once called.
void spawn_held(asio::any_io_executor ex, std::shared_ptr<Make> make, const char* where, Restart restart,
                std::weak_ptr<Lifetime::State> owner, std::chrono::milliseconds backoff) {
  const auto st = owner.lock();
  if (!st) return;  // the owner has ended: nothing new starts
  asio::awaitable<void> aw;
  try {
    aw = (*make)();
  } catch (const std::exception& e) {
    note_internal_error(where, e.what());
    return;
  }
  run_under(ex, std::move(aw), where, st, [ex, make, where, restart, backoff](const std::weak_ptr<Lifetime::State>& owner) {
    if (restart == Restart::no || owner.expired()) return;
    auto timer = std::make_shared<asio::steady_timer>(ex, backoff);
    timer->async_wait([timer, ex, make, where, owner, backoff](boost::system::error_code ec) {
      if (ec || owner.expired()) return;
      spdlog::warn("{}: restarted after an internal error", where);
      spawn_held(ex, make, where, Restart::yes, owner, backoff);
    });
  });
}

}  // namespace

void spawn(asio::any_io_executor ex, Make make, const char* where, Lifetime& owner, Restart restart, std::chrono::milliseconds backoff) {
  spawn_held(std::move(ex), std::make_shared<Make>(std::move(make)), where, restart, owner.state_, backoff);
}

}  // namespace lastgood::net

namespace lastgood::net {

void spawn(const asio::any_io_executor& ex, asio::awaitable<void> aw, const char* where, Lifetime& owner) {
  if (!owner.state_) return;
  run_under(ex, std::move(aw), where, owner.state_, [](const std::weak_ptr<Lifetime::State>&) {});
}

}  // namespace lastgood::net
