#pragma once
// The deadlines of every request in flight on one io_context, kept by one timer (an io_context
// service, used from the thread that runs it). A request's deadline is an entry in a min-heap
// (added and removed in O(log n) of the requests in flight); the timer is set for the earliest
// entry and, when that request ends first, is left to fire early and re-arm, so under load it
// wakes about once per timeout, not once per request. It is cancelled when nothing waits, so
// that io_context::run() can return. Why one timer and not one per connection:
// docs/benchmarks.md (round 4).
#include <chrono>
#include <cstddef>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "net/supervise.hpp"

namespace lastgood::net {

class Deadlines final : public boost::asio::execution_context::service {
 public:
  struct Waiter {
    std::chrono::steady_clock::time_point at{};
    size_t pos = npos;  // index in the heap; npos when not waiting
    virtual void expired() = 0;

   protected:
    ~Waiter() = default;
  };
  static constexpr size_t npos = static_cast<size_t>(-1);
  static inline boost::asio::execution_context::id id;

  explicit Deadlines(boost::asio::io_context& ioc) : boost::asio::execution_context::service(ioc), timer_(ioc) {}
  // HTTP connections run on an io_context (lastgood's loop, or a test's).
  static Deadlines& of(const boost::asio::any_io_executor& ex) {
    auto& ctx = boost::asio::query(ex, boost::asio::execution::context);
    return boost::asio::use_service<Deadlines>(static_cast<boost::asio::io_context&>(ctx));
  }

  void add(Waiter& w, std::chrono::steady_clock::time_point at) {
    if (w.pos != npos) remove(w);
    w.at = at;
    w.pos = heap_.size();
    heap_.push_back(&w);
    up(w.pos);
    arm();
  }
  void remove(Waiter& w) {
    if (w.pos == npos) return;
    const size_t i = w.pos;
    w.pos = npos;
    Waiter* last = heap_.back();
    heap_.pop_back();
    if (heap_.empty() && armed_ != std::chrono::steady_clock::time_point::max()) {
      // Nothing waits: a pending timer would be work that keeps io_context::run() from returning.
      armed_ = std::chrono::steady_clock::time_point::max();
      timer_.cancel();
    }
    if (i == heap_.size()) return;
    heap_[i] = last;
    last->pos = i;
    up(i);
    down(last->pos);
  }
  size_t waiting() const { return heap_.size(); }

 private:
  void shutdown() override {
    for (auto* w : heap_) w->pos = npos;
    heap_.clear();
    timer_.cancel();
  }
  void arm() {
    if (heap_.empty() || heap_[0]->at >= armed_) return;
    armed_ = heap_[0]->at;
    timer_.expires_at(armed_);
    timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) guarded("probe", [&] { fire(); });
    });
  }
  void fire() {
    armed_ = std::chrono::steady_clock::time_point::max();
    const auto now = std::chrono::steady_clock::now();
    while (!heap_.empty() && heap_[0]->at <= now) {
      Waiter* w = heap_[0];
      remove(*w);
      w->expired();
    }
    arm();
  }
  bool less(size_t a, size_t b) const { return heap_[a]->at < heap_[b]->at; }
  void swap_at(size_t a, size_t b) {
    std::swap(heap_[a], heap_[b]);
    heap_[a]->pos = a;
    heap_[b]->pos = b;
  }
  void up(size_t i) {
    while (i > 0 && less(i, (i - 1) / 2)) {
      swap_at(i, (i - 1) / 2);
      i = (i - 1) / 2;
    }
  }
  void down(size_t i) {
    for (;;) {
      size_t m = i;
      const size_t l = 2 * i + 1, r = l + 1;
      if (l < heap_.size() && less(l, m)) m = l;
      if (r < heap_.size() && less(r, m)) m = r;
      if (m == i) return;
      swap_at(i, m);
      i = m;
    }
  }

  std::vector<Waiter*> heap_;
  boost::asio::steady_timer timer_;
  std::chrono::steady_clock::time_point armed_ = std::chrono::steady_clock::time_point::max();
};

}  // namespace lastgood::net
