#pragma once
// May this replica act on this service, and under which fencing token? Asked before every
// action_started. A single lastgood always may, with token 0; with several replicas the answer
// comes from etcd (shared/ha.md: one owner per service, a fencing token on every action).
#include <cstdint>
#include <string>

namespace lastgood::watchdog {

struct Grant {
  bool granted = true;
  std::uint64_t fence = 0;
  std::string why;  // when not granted
};

class Coordinator {
 public:
  virtual ~Coordinator() = default;
  virtual Grant may_act(const std::string& service) = 0;
};

class LocalCoordinator final : public Coordinator {
 public:
  Grant may_act(const std::string&) override { return {}; }
};

}  // namespace lastgood::watchdog
