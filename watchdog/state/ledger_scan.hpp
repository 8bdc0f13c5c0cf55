#pragma once
// What the ledger's writer (ledger.cpp) and its reader (ledger_verify.cpp) share. Not for use
// outside watchdog/state/.
#include <functional>
#include <initializer_list>
#include <optional>
#include <utility>
#include <string>
#include <string_view>
#include <vector>

#include "watchdog/state/events.hpp"
#include "watchdog/state/ledger.hpp"

namespace lastgood::watchdog {

inline const std::string kKeyedType{name(Event::ledger_keyed)};

// SHA-256 (no key) or HMAC-SHA256 (a key) over several pieces without joining them.
std::string digest_hex(const std::string* key, std::initializer_list<std::string_view> parts);

inline const std::string kSnapshotType{name(Event::snapshot)};

// Where a scan starts. Known (the default): at the ledger's beginning, or where the file before
// it in the ledger's segments ended (its last seq and hash, and keying), so the chain runs on
// across files. Not known: a file read on its own, which begins at seq 1 or, being a segment that
// follows sealed ones, with a snapshot (whose own seq and prev then say where the chain stands).
struct ScanFrom {
  std::uint64_t count = 0;
  std::string head_hash = {};
  std::uint64_t keyed_from = 0;
  std::string key_id = {};
  bool known = true;
};

struct Scan {
  std::vector<LedgerEntry> entries;  // as Keep asked
  VerifyReport report;
  bool torn_tail = false;        // the last line is incomplete or unparsable
  std::uint64_t good_bytes = 0;  // length of the file up to the end of the last good line
  std::uint64_t count = 0;       // intact entries (the last one's seq)
  std::string head_hash;         // the last intact entry's hash
  std::uint64_t first_seq = 0;   // of the file's first intact entry (0: none)
  std::string first_type;
  std::string first_prev;
};
// want_data(type, data_text): whether to parse that entry's data (replay needs only some).
using WantData = std::function<bool(const std::string&, std::string_view)>;
// Which entries a scan keeps: every one (tools, tests), only those whose data was wanted, without
// their chain fields (replay at start: memory follows what replay reads, not the history), or none
// (verify: it streams).
enum class Keep { all, wanted, none };
// Reads the file a piece at a time.
// With a sink (Keep::all or Keep::wanted), the entries go to it instead of Scan::entries.
Scan scan(const std::string& path, const std::string* key, const WantData& want_data, Keep keep,
          const std::function<void(LedgerEntry&&)>& sink = {}, const ScanFrom& from = {});
// The seq and hash of a ledger file's last line, read from its end (a sealed segment, checked
// against the snapshot that follows it); nullopt when it has none that reads as an entry.
std::optional<std::pair<std::uint64_t, std::string>> last_entry_of(const std::string& path);

}  // namespace lastgood::watchdog
