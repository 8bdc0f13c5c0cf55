#include "watchdog/ha/placement.hpp"

#include <algorithm>

namespace lastgood::watchdog::ha {

std::uint64_t fnv1a64(std::string_view data) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : data) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

int shard_of(std::string_view service, int shards) {
  if (shards <= 1) return 0;
  return static_cast<int>(fnv1a64(service) % static_cast<std::uint64_t>(shards));
}

namespace {
std::uint64_t weight(int shard, const std::string& replica) {
  // "‖": the shard's number and the replica's id with a separator no id contains.
  return fnv1a64(std::to_string(shard) + "/" + replica);
}
}  // namespace

std::vector<std::string> campaign_order(int shard, std::vector<std::string> members) {
  std::sort(members.begin(), members.end());
  members.erase(std::unique(members.begin(), members.end()), members.end());
  std::stable_sort(members.begin(), members.end(),
                   [shard](const std::string& a, const std::string& b) { return weight(shard, a) > weight(shard, b); });
  return members;
}

std::size_t rank_of(int shard, const std::string& replica, const std::vector<std::string>& members) {
  const auto order = campaign_order(shard, members);
  const auto it = std::find(order.begin(), order.end(), replica);
  return static_cast<std::size_t>(it - order.begin());
}

}  // namespace lastgood::watchdog::ha
