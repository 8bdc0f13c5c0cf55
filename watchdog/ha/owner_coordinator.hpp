#pragma once
// The coordinator of a replica among several (ha.md): it may act on a service only while it owns
// the service's shard, under that ownership's fence. The fenced intent transaction that ha.md
// puts before every action_started comes on top of this answer; this is the first gate.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "watchdog/ha/placement.hpp"
#include "watchdog/pipeline/coordinator.hpp"

namespace lastgood::watchdog::ha {

class OwnerCoordinator final : public Coordinator {
 public:
  // `fence_of(shard)`: the fence while this replica owns the shard (Replica::fence), else nullopt.
  using FenceOf = std::function<std::optional<std::int64_t>(int shard)>;
  OwnerCoordinator(int shards, FenceOf fence_of) : shards_(shards), fence_of_(std::move(fence_of)) {}

  Grant may_act(const std::string& service) override {
    const int shard = shard_of(service, shards_);
    if (const auto f = fence_of_(shard)) return {true, static_cast<std::uint64_t>(*f), ""};
    return {false, 0, "this replica does not own shard " + std::to_string(shard) + " of service " + service + " (standby, or cut off from etcd)"};
  }

 private:
  int shards_;
  FenceOf fence_of_;
};

}  // namespace lastgood::watchdog::ha
