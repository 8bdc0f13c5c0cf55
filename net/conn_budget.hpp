#pragma once
// How many sockets probes may hold open at once (issue 21: more targets than descriptors). The
// open-files limit is shared with the API, the ledger, actions and notices; probes get what is
// left after a reserve for those. Within it, most sockets may stay open between runs (keep_limit);
// past that, a probe's connection closes after its run and connects again on the next, so with
// more targets than the budget a fixed set stays kept (an LRU evicting the oldest would miss every
// time: probes run in a cycle). Should per-run sockets fill the rest, the kept-alive connection
// idle the longest is closed to make room. Only when every socket in the budget is in the middle of a request
// is a new one refused, and that run is the watcher's `error` (its own limit), never the target's
// `fail`. So lastgood never runs out of descriptors on its own probes: the API still accepts,
// the ledger still opens, and no EMFILE is blamed on a target.
//
// One per io_context (a service), used from the thread that runs it; the counts are atomics for
// the /metrics writer's thread. A capacity of 0 means no limit (tests, tools).
#include <atomic>
#include <cstddef>
#include <cstdint>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>

namespace lastgood::net {

class ConnectionBudget final : public boost::asio::execution_context::service {
 public:
  // A holder of at most one socket (an HTTP connection).
  struct Member {
    Member* prev = nullptr;
    Member* next = nullptr;
    bool holds = false;  // counted in the budget
    bool idle = false;   // kept alive with nothing in flight: in the LRU, may be evicted
    // Close the idle socket now (the budget has already stopped counting it).
    virtual void evict() = 0;

   protected:
    ~Member() = default;
  };
  static inline boost::asio::execution_context::id id;
  explicit ConnectionBudget(boost::asio::io_context& ioc) : boost::asio::execution_context::service(ioc) {}
  static ConnectionBudget& of(const boost::asio::any_io_executor& ex) {
    auto& ctx = boost::asio::query(ex, boost::asio::execution::context);
    return boost::asio::use_service<ConnectionBudget>(static_cast<boost::asio::io_context&>(ctx));
  }

  // The probes' share of an open-files limit: what is left after `reserved` (the API's
  // connections and a margin for the ledger, actions, notices and the process itself).
  static std::size_t share_of(std::uint64_t open_files_limit, std::size_t reserved);

  void set_capacity(std::size_t n) { capacity_.store(n, std::memory_order_relaxed); }
  std::size_t capacity() const { return capacity_.load(std::memory_order_relaxed); }
  std::size_t in_use() const { return held_.load(std::memory_order_relaxed) - kept_.load(std::memory_order_relaxed); }
  std::size_t kept() const { return kept_.load(std::memory_order_relaxed); }
  std::uint64_t evictions() const { return evictions_.load(std::memory_order_relaxed); }
  std::uint64_t refusals() const { return refusals_.load(std::memory_order_relaxed); }

  // Before opening a socket: true when `m` may (it now holds a place, made by closing the
  // connection idle longest when the budget is full); false when every place is in flight.
  bool acquire(Member& m);
  // The socket is closed (by the member itself): its place is free.
  void release(Member& m);
  // A request ended: true when the connection may stay open (it waits in the LRU, newest last);
  // false when the sockets kept alive already fill keep_limit(): close it.
  bool idle(Member& m);
  // How many sockets may stay open between runs: the capacity less a share (a tenth, 16 to half
  // of it) left for probes that connect per run.
  std::size_t keep_limit() const;
  // Whether a connection that holds a place now would stay open after its request (idle()'s own
  // test, asked before the request is sent: one that will not says Connection: close).
  bool would_keep(const Member& m) const { return m.idle || held_.load(std::memory_order_relaxed) <= keep_limit(); }
  // A request starts on the kept connection: out of the LRU until it ends.
  void busy(Member& m);

 private:
  void shutdown() override {}
  void unlink(Member& m);
  std::atomic<std::size_t> capacity_{0}, held_{0}, kept_{0};
  std::atomic<std::uint64_t> evictions_{0}, refusals_{0};
  Member* oldest_ = nullptr;  // the LRU's ends
  Member* newest_ = nullptr;
};

// The budget of the process's loop, for /metrics (set by the watchdog; null in tools and tests).
extern std::atomic<const ConnectionBudget*> g_probe_budget;

}  // namespace lastgood::net
