// The ledger line reader: `ledger verify` (with and without a key) on any bytes, and the
// open-and-replay of `run` (which repairs a torn tail and refuses other damage) on any file.
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include "watchdog/state/ledger.hpp"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool quiet = (spdlog::set_level(spdlog::level::off), true);  // a repaired tail logs an error each time
  (void)quiet;
  static const std::string key = "lastgood-fuzz-ledger-key-0123456789";
  // tmpfs where there is one: the open path writes and syncs, which on a disk caps the rate.
  static const struct ScratchDir {
    fs::path path = (fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path()) /
                    ("lastgood-fuzz-ledger-" + std::to_string(::getpid()));
    ~ScratchDir() {  // libFuzzer ends with exit(): the scratch dir does not outlive the run
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  } scratch;
  const fs::path& dir = scratch.path;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto plain = lastgood::watchdog::verify_ledger_text(text);
  const auto keyed_report = lastgood::watchdog::verify_ledger_text(text, &key);
  // Opening does what verify does, then more only for an intact ledger or a damaged last line
  // (the repair, the keyed entry, the first append): other damage is refused right after the
  // same scan, so only these inputs go through the file (the harness runs ~10x faster).
  const std::uint64_t lines = static_cast<std::uint64_t>(std::count(text.begin(), text.end(), '\n')) + 1;
  const auto opens = [&](const lastgood::watchdog::VerifyReport& r) { return r.ok || r.bad_line + 1 >= lines; };
  if (!opens(plain) && !opens(keyed_report)) return 0;
  fs::remove_all(dir);
  fs::create_directories(dir);
  {
    std::ofstream out(dir / "ledger.jsonl", std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(size));
  }
  try {
    const bool keyed = text.find("ledger_keyed") != std::string_view::npos;
    lastgood::watchdog::Ledger ledger(dir.string(), keyed ? std::optional<std::string>(key) : std::nullopt);
    (void)ledger.take_loaded();
  } catch (const std::exception&) {
  }
  return 0;
}
