#pragma once
// The ledger: state_dir/ledger.jsonl, one JSON object a line:
//   {"seq", "ts", "type", "service", "data", "prev", "hash"}
// hash = sha256_hex(prev + canonical JSON of the entry without "hash"); canonical JSON is
// nlohmann's dump() (keys sorted, no spaces). Each append is written and, unless it asks for
// Sync::deferred, fdatasync'd before it returns, so an effect recorded as done survives a crash.
// Deferred entries (trigger transitions: evidence, high in volume, nothing is acted on from them
// after a restart) are synced by the next durable append or on close; a crash can lose only a
// tail of them, never an entry that came before a durable one. A truncated last line (crash
// mid-write) is detected; on open it is moved aside and recorded, never silently accepted.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lastgood::watchdog {

struct LedgerEntry {
  std::uint64_t seq = 0;
  long long ts_ms = 0;  // milliseconds since the epoch
  std::string type;
  std::string service;
  nlohmann::json data;
  std::string prev;
  std::string hash;
};

struct VerifyReport {
  bool ok = false;
  std::uint64_t entries = 0;
  std::uint64_t bad_line = 0;  // 1-based; 0 when ok
  std::string why;
};

// Walks a ledger file and checks every line and the chain. Never throws.
VerifyReport verify_ledger(const std::string& path);
// Reads every entry of an intact ledger (for tests and tools); empty when it is not intact.
std::vector<LedgerEntry> read_ledger(const std::string& path);

std::string sha256_hex(const std::string& data);
// Test hook for crash safety: when LASTGOOD_TEST_CRASH_AFTER names `point`, stop dead (_exit 99).
void test_crash_point(const char* point);
std::string entry_hash(const LedgerEntry& e);  // over everything but e.hash

class Ledger {
 public:
  // Opens (creating) state_dir/ledger.jsonl, verifies it and loads its entries for replay.
  // A truncated or unparsable last line is moved to ledger.jsonl.torn-<ts> and truncated off,
  // with a "ledger_repaired" entry; any other damage throws (lastgood refuses to run on a
  // ledger it cannot trust; `lastgood ledger verify` names the line).
  explicit Ledger(const std::string& state_dir);
  ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // Appends and syncs; returns the entry. Throws std::runtime_error when the write fails.
  enum class Sync { now, deferred };
  LedgerEntry append(const std::string& type, const std::string& service, nlohmann::json data, long long ts_ms, Sync sync = Sync::now);
  // The entries found at open, for replay (handed over once; the ledger keeps only its head).
  std::vector<LedgerEntry> take_loaded() { return std::move(loaded_); }
  std::uint64_t size() const { return count_; }
  const std::string& path() const { return path_; }
  // Test hook: LASTGOOD_TEST_CRASH_AFTER=<type>[:<n>] makes the process _exit(99) right after
  // the n-th (default first) durable append of that type.
  void set_after_append(std::function<void(const LedgerEntry&)> f) { after_append_ = std::move(f); }

 private:
  std::string path_;
  int fd_ = -1;
  std::vector<LedgerEntry> loaded_;
  std::uint64_t count_ = 0;
  std::string head_;  // hash of the last entry
  int unsynced_ = 0;  // deferred appends not yet fdatasync'd
  std::function<void(const LedgerEntry&)> after_append_;
  std::string crash_type_;
  int crash_count_ = 0;
};

nlohmann::json to_json(const LedgerEntry& e);

}  // namespace lastgood::watchdog
