#pragma once
// A fake clock and an in-memory recorder for the pipeline's parts (no ledger, no sockets).
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "watchdog/pipeline/clock.hpp"
#include "watchdog/pipeline/recorder.hpp"
#include "watchdog/state/ledger.hpp"

namespace testing {

using lastgood::watchdog::Event;

struct FakeClock final : lastgood::watchdog::Clock {
  lastgood::policy::TimePoint t = lastgood::policy::TimePoint{} + std::chrono::hours(24 * 365 * 56);
  lastgood::policy::TimePoint now() const override { return t; }
};

// Keeps what is recorded as ledger entries would be (type by name), and can refuse to record.
struct FakeRecorder final : lastgood::watchdog::Recorder {
  explicit FakeRecorder(const FakeClock& c) : clock(c) {}
  bool record(Event type, const std::string& service, nlohmann::json data) override {
    if (!can) return false;
    lastgood::watchdog::LedgerEntry e;
    e.seq = entries.size() + 1;
    e.ts_ms = lastgood::watchdog::ms(clock.now());
    e.type = std::string(name(type));
    e.service = service;
    e.data = std::move(data);
    entries.push_back(std::move(e));
    return true;
  }
  bool record_unauthenticated(Event type, const std::string& service, const std::string& client, nlohmann::json data) override {
    data["source"] = client;
    return record(type, service, std::move(data));
  }
  bool writable() const override { return can; }
  const std::string& error() const override { return why; }

  // The types recorded, in order.
  std::vector<std::string> types() const {
    std::vector<std::string> out;
    for (const auto& e : entries) out.push_back(e.type);
    return out;
  }
  std::vector<lastgood::watchdog::LedgerEntry> of(Event type) const {
    std::vector<lastgood::watchdog::LedgerEntry> out;
    for (const auto& e : entries)
      if (e.type == name(type)) out.push_back(e);
    return out;
  }

  const FakeClock& clock;
  bool can = true;
  std::string why = "disk full (test)";
  std::vector<lastgood::watchdog::LedgerEntry> entries;
};

// Notices sent, as (event, service).
struct Notices {
  std::vector<std::pair<std::string, std::string>> sent;
  lastgood::watchdog::Notify sink() {
    return [this](const std::string& e, const std::string& s, const nlohmann::json&) { sent.emplace_back(e, s); };
  }
};

}  // namespace testing
