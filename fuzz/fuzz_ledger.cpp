// The ledger line reader: `ledger verify` and the open-and-replay of `run` on any file content.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "watchdog/ledger.hpp"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const fs::path dir = fs::temp_directory_path() / ("lastgood-fuzz-ledger-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  {
    std::ofstream out(dir / "ledger.jsonl", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  (void)lastgood::watchdog::verify_ledger((dir / "ledger.jsonl").string());
  try {
    lastgood::watchdog::Ledger ledger(dir.string());  // repairs a torn tail, refuses other damage (throws)
    (void)ledger.take_loaded();
  } catch (const std::exception&) {
  }
  return 0;
}
