// A ledger snapshot read back (the first entry of a segment: checkpoint.hpp). Any JSON is either
// refused with an exception (the pipeline refuses the ledger, naming the entry) or restored; and
// what is restored snapshots to something that restores to the same snapshot.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>

#include <nlohmann/json.hpp>

#include "watchdog/pipeline/checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto j = nlohmann::json::parse(reinterpret_cast<const char*>(data), reinterpret_cast<const char*>(data) + size, nullptr, false);
  if (j.is_discarded()) return 0;
  lastgood::watchdog::LedgerEntry e;
  e.seq = 1'000'000;
  e.type = "snapshot";
  e.data = std::move(j);
  lastgood::watchdog::Checkpoint first;
  try {
    first.feed(e);
  } catch (const std::exception&) {
    return 0;  // refused: what the pipeline turns into damage at that entry
  }
  e.data = first.snapshot();
  lastgood::watchdog::Checkpoint second;
  second.feed(e);  // lastgood's own snapshot: never refused
  if (second.snapshot() != e.data) std::abort();
  return 0;
}
