#include "watchdog/ha/replica.hpp"

#include <time.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "watchdog/ha/watch.hpp"

namespace lastgood::watchdog::ha {

namespace asio = boost::asio;
using namespace std::chrono_literals;

std::chrono::nanoseconds boot_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

Replica::Replica(asio::any_io_executor ex, EtcdClient& etcd, ReplicaOptions options, OnChange on_change)
    : ex_(ex), etcd_(etcd), o_(std::move(options)), keys_(o_.cluster), on_change_(std::move(on_change)), timer_(ex) {}

Replica::~Replica() { stop(); }

void Replica::start() {
  net::spawn(ex_, [this] { return run(); }, "ha", life_, net::Restart::yes);
  net::spawn(ex_, [this] { return watch_owners(); }, "ha", life_, net::Restart::yes);
}

void Replica::wake() {
  woken_ = true;
  timer_.cancel();
}

asio::awaitable<void> Replica::watch_owners() {
  asio::steady_timer pause(ex_);
  const std::string prefix = keys_.prefix() + "shard/";
  while (!stopped_) {
    const std::string endpoint = etcd_.endpoint();
    if (endpoint.rfind("http://", 0) != 0) co_return;
    EtcdWatch w(ex_, endpoint, etcd_.token());
    auto started = co_await w.start(prefix, true, 0, std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::milliseconds>(o_.lease) / 3);
    if (std::holds_alternative<bool>(started)) {
      wake();  // what changed before the watch began is seen by this round
      for (;;) {
        // Quiet for a lease: the stream is made again (a half-open connection is not trusted).
        auto b = co_await w.next(std::chrono::steady_clock::now() + o_.lease);
        if (!std::holds_alternative<WatchBatch>(b)) break;
        const auto& batch = std::get<WatchBatch>(b);
        if (batch.canceled) break;
        for (const auto& e : batch.events)
          if (e.type == WatchEvent::Type::del) {
            wake();
            break;
          }
      }
    }
    w.close();
    if (stopped_) break;
    pause.expires_after(o_.retry);
    co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

void Replica::stop() {
  stopped_ = true;
  timer_.cancel();
  life_.end();
}

std::optional<std::int64_t> Replica::fence(int shard) const {
  if (cut_off_ || boot_now() >= deadline_) return std::nullopt;
  auto it = owned_.find(shard);
  if (it == owned_.end()) return std::nullopt;
  return it->second;
}

Replica::State Replica::state() const {
  if (cut_off_) return State::cut_off;
  if (lease_ == 0) return State::starting;
  for (const auto& [shard, f] : owned_)
    if (fence(shard)) return State::owner;
  return State::standby;
}

std::chrono::nanoseconds Replica::lease_remaining() const { return deadline_ - boot_now(); }

void Replica::lose_all(const std::string& why) {
  auto owned = std::move(owned_);
  owned_.clear();
  for (const auto& [shard, f] : owned) {
    spdlog::warn("ha: replica {} lost shard {} (fence {}): {}", o_.replica, shard, f, why);
    if (on_change_) on_change_(shard, 0, why);
  }
}

// A lease, and the member key on it. false: etcd could not be reached or refused.
asio::awaitable<bool> Replica::ensure_lease() {
  if (lease_ != 0) co_return true;
  const auto sent = boot_now();
  auto g = co_await etcd_.grant(o_.lease);
  if (auto* e = std::get_if<EtcdError>(&g)) {
    spdlog::warn("ha: replica {}: no lease: {}", o_.replica, e->message);
    co_return false;
  }
  const auto& grant = std::get<LeaseGrant>(g);
  Txn join;
  join.success.push_back(Op::put(keys_.member(o_.replica), o_.address, grant.id));
  auto j = co_await etcd_.txn(join);
  if (auto* e = std::get_if<EtcdError>(&j)) {
    spdlog::warn("ha: replica {}: cannot join the members: {}", o_.replica, e->message);
    co_return false;
  }
  lease_ = grant.id;
  member_ = true;
  last_keepalive_ = sent;
  deadline_ = sent + std::chrono::seconds(grant.ttl) - 1s;
  spdlog::info("ha: replica {} joined cluster {} (lease {:x}, {}s)", o_.replica, o_.cluster, lease_, grant.ttl);
  co_return true;
}

asio::awaitable<void> Replica::keepalive_if_due() {
  const auto now = boot_now();
  if (now - last_keepalive_ < std::chrono::duration_cast<std::chrono::nanoseconds>(o_.lease) / 3) co_return;
  const auto sent = now;
  auto k = co_await etcd_.keepalive(lease_);
  if (auto* e = std::get_if<EtcdError>(&k)) {
    const bool late = boot_now() - last_keepalive_ >= o_.renew_deadline || boot_now() >= deadline_;
    if (late && !cut_off_) {
      cut_off_ = true;
      lose_all("no keepalive for the renew deadline (" + e->message + ")");
    }
    co_return;
  }
  const auto& ttl = std::get<std::optional<std::int64_t>>(k);
  if (!ttl) {  // the lease is gone: whatever it held is another replica's now
    lose_all("the lease expired in etcd");
    lease_ = 0;
    co_return;
  }
  if (cut_off_) {
    // Back after stepping down: the old lease still holds this replica's owner keys, which nobody
    // else could take until it expired. Revoke it and start again with a new one.
    const auto old = lease_;
    lease_ = 0;
    cut_off_ = false;
    auto r = co_await etcd_.revoke(old);
    if (auto* e = std::get_if<EtcdError>(&r)) spdlog::warn("ha: replica {}: revoking the old lease failed ({}); it expires on its own", o_.replica, e->message);
    co_return;
  }
  last_keepalive_ = sent;
  deadline_ = sent + std::chrono::seconds(*ttl) - 1s;
}

asio::awaitable<void> Replica::campaign_round() {
  // A replica that cannot act (its ledger takes no entries) steps aside for one that can.
  if (o_.healthy && !o_.healthy()) {
    if (member_) {
      Txn leave;
      leave.success.push_back(Op::del(keys_.member(o_.replica)));
      auto r = co_await etcd_.txn(leave);
      if (std::holds_alternative<TxnResult>(r)) {
        member_ = false;
        spdlog::warn("ha: replica {} cannot act (its ledger takes no entries): it leaves the members until it can", o_.replica);
      }
    }
    std::vector<std::pair<int, std::int64_t>> release;
    for (const auto& [shard, fence] : owned_)
      if (!(o_.busy && o_.busy(shard))) release.emplace_back(shard, fence);
    for (const auto& [shard, fence] : release) {
      owned_.erase(shard);
      spdlog::warn("ha: replica {} hands shard {} (fence {}) over: it cannot act (its ledger takes no entries)", o_.replica, shard, fence);
      if (on_change_) on_change_(shard, 0, "this replica cannot act (its ledger takes no entries): handed to a healthy replica");
      Txn hand;
      hand.compare.push_back({keys_.owner(shard), Compare::Target::create, Compare::Result::equal, fence, ""});
      hand.success.push_back(Op::del(keys_.owner(shard)));
      auto r = co_await etcd_.txn(hand);
      (void)r;  // not deleted (etcd away): the stale-key sweep below deletes it once healthy, or it expires with the lease
    }
    co_return;
  }
  if (!member_ && lease_ != 0) {
    Txn join;
    join.success.push_back(Op::put(keys_.member(o_.replica), o_.address, lease_));
    auto r = co_await etcd_.txn(join);
    if (!std::holds_alternative<TxnResult>(r)) co_return;
    member_ = true;
    spdlog::info("ha: replica {} can act again: back among the members", o_.replica);
  }
  const std::string members_prefix = keys_.members(), owners_prefix = keys_.prefix() + "shard/";  // (no temporaries in co_await)
  auto members_read = co_await etcd_.range(members_prefix, true);
  auto owners_read = co_await etcd_.range(owners_prefix, true);
  if (std::holds_alternative<EtcdError>(members_read) || std::holds_alternative<EtcdError>(owners_read)) co_return;
  std::vector<std::string> members;
  for (const auto& kv : std::get<RangeResult>(members_read).kvs) members.push_back(kv.key.substr(keys_.members().size()));
  std::map<std::string, const KeyValue*> owner_keys;
  for (const auto& kv : std::get<RangeResult>(owners_read).kvs) owner_keys[kv.key] = &kv;
  const auto now = boot_now();
  {
    std::map<std::string, std::chrono::nanoseconds> since;
    for (const auto& m : members) since[m] = member_since_.count(m) ? member_since_[m] : now;
    member_since_ = std::move(since);
  }
  // Spreading: a shard owned here whose first replica in the rendezvous order has been a member
  // for three rounds is handed over to it (its owner key deleted under this fence), while nothing
  // runs on it. Replicas that join late thus get their shards, instead of the first to start
  // keeping them all.
  std::vector<std::pair<int, std::string>> hand_over;  // shard, to whom
  for (const auto& [shard, fence] : owned_) {
    if (o_.shards == 1) break;  // active/standby: ownership stays where it is
    const auto order = campaign_order(shard, members);
    if (order.empty() || order[0] == o_.replica || now - member_since_[order[0]] < std::chrono::duration_cast<std::chrono::nanoseconds>(o_.retry) * 3 ||
        (o_.busy && o_.busy(shard)))
      continue;
    hand_over.emplace_back(shard, order[0]);
  }
  for (const auto& [shard, to] : hand_over) {
    const auto mine = owned_.find(shard);
    if (mine == owned_.end()) continue;  // lost meanwhile (resigned, cut off)
    const auto fence = mine->second;
    owned_.erase(mine);  // owns nothing from here, whatever etcd answers
    spdlog::info("ha: replica {} hands shard {} (fence {}) over to {}, first in its rendezvous order", o_.replica, shard, fence, to);
    if (on_change_) on_change_(shard, 0, "handed over to " + to);
    Txn hand;
    hand.compare.push_back({keys_.owner(shard), Compare::Target::create, Compare::Result::equal, fence, ""});
    hand.success.push_back(Op::del(keys_.owner(shard)));
    auto r = co_await etcd_.txn(hand);
    (void)r;  // not deleted (etcd away): the key expires with the lease, or the next owner finds it gone
  }
  for (int shard = 0; shard < o_.shards; ++shard) {
    if (stopped_) co_return;
    const auto it = owner_keys.find(keys_.owner(shard));
    const auto mine = owned_.find(shard);
    if (it != owner_keys.end()) {
      free_since_.erase(shard);
      // This replica's key that it no longer counts as its own (a hand-over whose delete did not
      // reach etcd): deleted now, or it would stay on the lease that is kept alive.
      if (mine == owned_.end() && it->second->lease == lease_ && lease_ != 0) {
        Txn drop;
        drop.compare.push_back({keys_.owner(shard), Compare::Target::create, Compare::Result::equal, it->second->create_revision, ""});
        drop.success.push_back(Op::del(keys_.owner(shard)));
        auto r = co_await etcd_.txn(drop);
        (void)r;
        continue;
      }
      // Watch for loss: the key must still be the one this replica's transaction created.
      if (mine != owned_.end() && it->second->create_revision != mine->second) {
        const auto fence = mine->second;
        owned_.erase(mine);
        spdlog::warn("ha: replica {} lost shard {} (fence {}): another replica owns it", o_.replica, shard, fence);
        if (on_change_) on_change_(shard, 0, "another replica owns it");
      }
      continue;
    }
    if (mine != owned_.end()) {  // the key is gone (its lease expired): so is the ownership
      const auto fence = mine->second;
      owned_.erase(mine);
      if (on_change_) on_change_(shard, 0, "the owner key is gone");
      spdlog::warn("ha: replica {} lost shard {} (fence {}): the owner key is gone", o_.replica, shard, fence);
    }
    // Free: campaign after rank × retry, so that the first in the rendezvous order usually wins
    // without a contest (only the transaction decides).
    const auto since = free_since_.emplace(shard, now).first->second;
    const auto rank = rank_of(shard, o_.replica, members);
    if (now - since < std::chrono::duration_cast<std::chrono::nanoseconds>(o_.retry) * static_cast<long>(rank)) continue;
    if (cut_off_ || now >= deadline_) continue;
    Txn t;
    t.compare.push_back({keys_.owner(shard), Compare::Target::create, Compare::Result::equal, 0, ""});
    t.success.push_back(Op::put(keys_.owner(shard), o_.replica + " " + o_.address, lease_));
    const auto lease = lease_;
    auto r = co_await etcd_.txn(t);
    // Resigned, cut off or on a new lease while the transaction was away: not this replica's
    // (the key goes with the old lease).
    if (stopped_ || cut_off_ || lease_ != lease) co_return;
    if (auto* won = std::get_if<TxnResult>(&r); won && won->succeeded) {
      owned_[shard] = won->revision;
      free_since_.erase(shard);
      spdlog::info("ha: replica {} owns shard {} (fence {})", o_.replica, shard, won->revision);
      if (on_change_) on_change_(shard, won->revision, "");
    }
  }
}

asio::awaitable<void> Replica::run() {
  while (!stopped_) {
    // (Each co_await on a line of its own: GCC 12 miscompiles one inside an if's condition.)
    woken_ = false;
    const bool have_lease = co_await ensure_lease();
    if (have_lease) co_await keepalive_if_due();
    if (have_lease && lease_ != 0) co_await campaign_round();
    if (!have_lease && !cut_off_ && !owned_.empty() && boot_now() >= deadline_) {
      cut_off_ = true;
      lose_all("etcd unreachable past the local deadline");
    }
    // The deadline is also checked between rounds: ownership ends on time even when etcd hangs.
    if (!owned_.empty() && boot_now() >= deadline_ && !cut_off_) {
      cut_off_ = true;
      lose_all("past the local deadline");
    }
    const std::chrono::milliseconds third = std::chrono::duration_cast<std::chrono::milliseconds>(o_.lease) / 3;
    auto wait = std::chrono::duration_cast<std::chrono::nanoseconds>(o_.retry < third ? o_.retry : third);
    // Owning something, wake at the local deadline too: the loss is reported (and actions
    // cancelled) on time, not up to a round late.
    if (!owned_.empty() && !cut_off_) wait = std::max(std::chrono::nanoseconds(1ms), std::min(wait, deadline_ - boot_now()));
    if (woken_) continue;  // an owner key went during this round: look again now
    timer_.expires_after(wait);
    co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

asio::awaitable<void> Replica::resign() {
  stopped_ = true;
  timer_.cancel();
  lose_all("resigned");
  if (lease_ != 0) {
    const auto lease = lease_;
    lease_ = 0;
    auto r = co_await etcd_.revoke(lease);
    if (auto* e = std::get_if<EtcdError>(&r)) spdlog::warn("ha: replica {}: revoking the lease failed ({}); it expires on its own", o_.replica, e->message);
  }
}

}  // namespace lastgood::watchdog::ha
