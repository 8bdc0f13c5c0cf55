#include "net/conn_budget.hpp"

#include <algorithm>

namespace lastgood::net {

std::atomic<const ConnectionBudget*> g_probe_budget{nullptr};

std::size_t ConnectionBudget::share_of(std::uint64_t limit, std::size_t reserved) {
  if (limit == 0) return 0;
  // At least 16 sockets for probes however small the limit; the margin is a twentieth of the
  // limit, at least 64 (a rollback over SSH, a notice, the ledger and incident files, a reload).
  const std::uint64_t margin = std::max<std::uint64_t>(64, limit / 20);
  const std::uint64_t keep = reserved + margin;
  return static_cast<std::size_t>(limit > keep + 16 ? limit - keep : 16);
}

void ConnectionBudget::unlink(Member& m) {
  if (!m.idle) return;
  (m.prev ? m.prev->next : oldest_) = m.next;
  (m.next ? m.next->prev : newest_) = m.prev;
  m.prev = m.next = nullptr;
  m.idle = false;
  kept_.fetch_sub(1, std::memory_order_relaxed);
}

bool ConnectionBudget::acquire(Member& m) {
  if (m.holds) return true;
  const std::size_t cap = capacity();
  if (cap != 0 && held_.load(std::memory_order_relaxed) >= cap) {
    Member* victim = oldest_;
    if (!victim) {
      refusals_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    unlink(*victim);
    victim->holds = false;
    held_.fetch_sub(1, std::memory_order_relaxed);
    evictions_.fetch_add(1, std::memory_order_relaxed);
    victim->evict();
  }
  m.holds = true;
  held_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void ConnectionBudget::release(Member& m) {
  if (!m.holds) return;
  unlink(m);
  m.holds = false;
  held_.fetch_sub(1, std::memory_order_relaxed);
}

std::size_t ConnectionBudget::keep_limit() const {
  const std::size_t cap = capacity();
  if (cap == 0) return static_cast<std::size_t>(-1);
  const std::size_t per_run = std::max<std::size_t>(1, std::min<std::size_t>(cap / 2, std::max<std::size_t>(16, cap / 10)));
  return cap - per_run;
}

bool ConnectionBudget::idle(Member& m) {
  if (!m.holds) return false;
  if (m.idle) return true;
  // Past the share kept alive, the connection closes after its run: with probes run in a cycle
  // (every interval, in the same order), keeping the newest and evicting the oldest would miss
  // every time; a fixed set kept and the rest connecting per run costs one connect per run of
  // the rest only.
  if (held_.load(std::memory_order_relaxed) > keep_limit()) return false;
  m.idle = true;
  m.prev = newest_;
  m.next = nullptr;
  (newest_ ? newest_->next : oldest_) = &m;
  newest_ = &m;
  kept_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void ConnectionBudget::busy(Member& m) { unlink(m); }

}  // namespace lastgood::net
