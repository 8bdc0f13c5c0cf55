#pragma once
// The ledger: state_dir/ledger.jsonl, one JSON object a line:
//   {"seq", "ts", "type", "service", "data", "prev", "hash"}
// hash = sha256_hex(prev + canonical JSON of the entry without "hash"); canonical JSON is
// nlohmann's dump() (keys sorted, no spaces). With a key (ledger.hmac_key_file), the hash is
// HMAC-SHA256 under it from a "ledger_keyed" entry on (the first keyed entry, naming the key's
// id): whoever can write the file but lacks the key cannot forge a consistent chain past it. Each append is written and, unless it asks for
// Sync::deferred, fdatasync'd before it returns, so an effect recorded as done survives a crash.
// Deferred entries (trigger transitions: evidence, high in volume, nothing is acted on from them
// after a restart) are synced by the next durable append or on close; a crash can lose only a
// tail of them, never an entry that came before a durable one. A truncated last line (crash
// mid-write) is detected; on open it is moved aside and recorded, never silently accepted.
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
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
  std::uint64_t head_seq = 0;  // the last intact entry's seq and hash (`lastgood ledger head`)
  std::string head_hash;
  std::uint64_t keyed_from = 0;  // line of the "ledger_keyed" entry; 0 when the ledger is not keyed
  std::string key_id;            // the id that entry names
  // Segments (a ledger rotated with snapshots): the file the damage is in (bad_line is a line of
  // that file), the first entry present (above 1 when the oldest segments were moved away), and
  // how many sealed segments were read before the active file.
  std::string bad_file;
  std::uint64_t from_seq = 1;
  std::size_t segments = 0;
};

// A ledger's sealed segments: FILE.<first seq>-<last seq> (12 digits each) beside FILE, oldest
// first. Each begins with a snapshot, except the ledger's very first one.
std::vector<std::string> sealed_segments(const std::string& path);
std::string sealed_name(const std::string& path, std::uint64_t first, std::uint64_t last);

// A key's id, safe to print and record: the first 16 hex digits of HMAC-SHA256(key, a fixed
// label). It tells two keys apart without saying anything about either.
std::string ledger_key_id(const std::string& key);

// Walks a ledger file (its sealed segments first, then the file itself, as one chain) and checks
// every line and the chain. Never throws. `key` (null: none)
// checks the keyed entries; a keyed ledger without the key, or a key and a ledger that was never
// keyed, is not ok (the report says which).
VerifyReport verify_ledger(const std::string& path, const std::string* key = nullptr);
// The same over a ledger's bytes in memory (fuzz/fuzz_ledger).
VerifyReport verify_ledger_text(std::string_view text, const std::string* key = nullptr);
// The hash of the intact entry with `seq`; nullopt when there is none (or the chain breaks before).
std::optional<std::string> ledger_hash_at(const std::string& path, std::uint64_t seq, const std::string* key = nullptr);
// Reads every entry of an intact ledger, its sealed segments first (for tests and tools); empty
// when it is not intact.
std::vector<LedgerEntry> read_ledger(const std::string& path, const std::string* key = nullptr);

std::string sha256_hex(const std::string& data);
// Test hook for crash safety: when LASTGOOD_TEST_CRASH_AFTER names `point`, stop dead (_exit 99).
void test_crash_point(const char* point);
std::string entry_hash(const LedgerEntry& e, const std::string* key = nullptr);  // over everything but e.hash

// Everything lastgood writes under state_dir is its own: files 0600, folders 0700 (whatever the
// umask). write_private() creates or replaces `path` with `text`; "" or why not.
std::string write_private(const std::string& path, const std::string& text);
// Creates `dir` (and parents) as 0700 where missing; "" or why not. An existing folder keeps its
// mode (the operator's choice), with a warning when others may read it.
std::string make_private_dir(const std::string& dir);

// The system calls an append makes, replaceable in tests to drive a full disk, a short write or
// a failed fdatasync through the same path a real fault takes.
struct LedgerIo {
  std::function<ssize_t(int, const void*, size_t)> write;
  std::function<int(int)> fdatasync;
};

// What an append that could not be made says: the entry is not in the ledger (cut back to the
// last whole entry), and lastgood must not act on what it would have recorded.
struct AppendResult {
  std::optional<LedgerEntry> entry;
  std::string error;  // "" when entry is set
  explicit operator bool() const { return entry.has_value(); }
};

// state_dir is used by one process at a time: an flock(2) on state_dir/lock, held for the
// process's life, with the holder's PID written in the file. A second lastgood on the same
// state_dir gets a StateLockError naming that PID (lastgood run then exits 1).
class StateLock {
 public:
  explicit StateLock(const std::string& state_dir);  // throws std::runtime_error when held or not possible
  ~StateLock();
  StateLock(const StateLock&) = delete;
  StateLock& operator=(const StateLock&) = delete;

 private:
  int fd_ = -1;
};

class Ledger {
 public:
  // Opens (creating) state_dir/ledger.jsonl, verifies it and loads its entries for replay.
  // A truncated or unparsable last line is moved to ledger.jsonl.torn-<ts> and truncated off,
  // with a "ledger_repaired" entry; any other damage throws (lastgood refuses to run on a
  // ledger it cannot trust; `lastgood ledger verify` names the line). With `hmac_key`, entries
  // are keyed: a ledger not yet keyed gets its "ledger_keyed" entry first; a ledger keyed with
  // another key, or keyed while no key is given, is refused. `io` replaces the system calls of
  // appends from the first one on (tests: a full disk at open).
  // `replay`: each entry replay reads is handed to it as the file is read, in order, and none is
  // kept (take_loaded() is then empty); without it they are kept for take_loaded(). Entries are
  // handed over before the whole file is checked: on damage the constructor still throws, and
  // the receiver must not have acted on them.
  using ReplaySink = std::function<void(LedgerEntry&&)>;
  explicit Ledger(const std::string& state_dir, std::optional<std::string> hmac_key = std::nullopt, LedgerIo io = {}, ReplaySink replay = {});
  ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // Appends and syncs; all or nothing: a failed or short write, or a failed fdatasync, is cut
  // back (ftruncate) to the last whole entry and the ledger's head does not move.
  enum class Sync { now, deferred };
  AppendResult try_append(const std::string& type, const std::string& service, nlohmann::json data, long long ts_ms,
                          Sync sync = Sync::now);
  // As try_append; throws std::runtime_error when the entry could not be made (tools and tests).
  LedgerEntry append(const std::string& type, const std::string& service, nlohmann::json data, long long ts_ms, Sync sync = Sync::now);
  void set_io(LedgerIo io) { io_ = std::move(io); }

  // Segments (issue 21): once the active file holds `entries` entries (0: never), rotate() is due.
  void set_segment_entries(std::uint64_t entries) { segment_entries_ = entries; }
  bool rotation_due() const { return segment_entries_ != 0 && active_entries() >= segment_entries_ && count_ >= retry_rotation_at_; }
  // Seals the active file as FILE.<first>-<last> and begins a new one with a snapshot entry
  // holding `state` (the replayed state: watchdog/pipeline/checkpoint.hpp), chained to the last
  // entry. Crash-safe: the new file is written and synced as FILE.next, then the active file is
  // renamed to its sealed name and FILE.next to FILE; an open finds a rotation cut short and
  // completes it (or discards FILE.next when FILE is still there). Fails as a whole: on any error
  // the ledger goes on in the file it had (retried after another tenth of a segment).
  AppendResult rotate(nlohmann::json state, long long ts_ms);
  // Entries in the active file, and the seq of its first one.
  std::uint64_t active_entries() const { return count_ + 1 - first_seq_; }
  std::uint64_t first_seq() const { return first_seq_; }
  // Bytes of whole entries in the file (where a failed append is cut back to).
  std::uint64_t bytes() const { return bytes_; }
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
  std::optional<std::string> key_;
  bool keyed_ = false;  // the "ledger_keyed" entry is in the file: hashes from here on are HMACs
  std::uint64_t bytes_ = 0;  // file length up to the end of the last whole entry
  std::uint64_t first_seq_ = 1;  // of the active file's first entry
  std::uint64_t keyed_from_ = 0;
  std::uint64_t segment_entries_ = 0;
  std::uint64_t retry_rotation_at_ = 0;  // after a failed rotation: not before this seq
  std::string broken_;  // a rotation that could neither finish nor be undone: no more appends
  LedgerIo io_;
  int unsynced_ = 0;  // deferred appends not yet fdatasync'd
  std::function<void(const LedgerEntry&)> after_append_;
  std::string crash_type_;
  int crash_count_ = 0;
};

nlohmann::json to_json(const LedgerEntry& e);

// Whether replay at open reads this entry (Ledger's replay sink gets it): all but clear_refused
// and the transitions that neither go to nor come from firing (the bulk of a long ledger).
// A checkpoint fed live entries skips the same ones, so that it folds what replay folds.
bool replay_reads(const std::string& type, const nlohmann::json& data);

}  // namespace lastgood::watchdog
