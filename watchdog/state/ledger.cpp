#include "watchdog/state/ledger_scan.hpp"

#include "watchdog/json_text.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include <spdlog/spdlog.h>

namespace lastgood::watchdog {

using nlohmann::json;

bool replay_reads(const std::string& type, const json& data) {
  if (type == name(Event::transition))
    return data.is_object() && ((data.contains("to") && data["to"] == "firing") || (data.contains("from") && data["from"] == "firing"));
  return type != name(Event::clear_refused);
}

namespace {
// Copies `from`'s bytes after `offset` to a new private file `to`, a piece at a time; "" or why not.
std::string copy_tail_private(const std::string& from, std::uint64_t offset, const std::string& to, std::uint64_t& copied) {
  const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return std::string("cannot read ") + from + ": " + std::strerror(errno);
  const int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0) {
    const std::string why = std::string("cannot create ") + to + ": " + std::strerror(errno);
    ::close(in);
    return why;
  }
  std::string err;
  std::vector<char> piece(1 << 20);
  auto at = static_cast<off_t>(offset);
  for (;;) {
    const ssize_t n = ::pread(in, piece.data(), piece.size(), at);
    if (n < 0) err = std::string("reading ") + from + ": " + std::strerror(errno);
    if (n <= 0) break;
    for (ssize_t done = 0; done < n && err.empty();) {
      const ssize_t w = ::write(out, piece.data() + done, static_cast<size_t>(n - done));
      if (w < 0) err = std::string("writing ") + to + ": " + std::strerror(errno);
      else done += w;
    }
    if (!err.empty()) break;
    at += n;
    copied += static_cast<std::uint64_t>(n);
  }
  if (err.empty() && ::fsync(out) != 0) err = std::string("syncing ") + to + ": " + std::strerror(errno);
  ::close(out);
  ::close(in);
  return err;
}
}  // namespace

Ledger::Ledger(const std::string& state_dir, std::optional<std::string> hmac_key, LedgerIo io, ReplaySink replay)
    : path_(state_dir + "/ledger.jsonl"), key_(std::move(hmac_key)), io_(std::move(io)) {
  if (const char* c = std::getenv("LASTGOOD_TEST_CRASH_AFTER")) {
    std::string spec = c;
    auto colon = spec.find(':');
    crash_type_ = spec.substr(0, colon);
    crash_count_ = colon == std::string::npos ? 1 : std::atoi(spec.c_str() + colon + 1);
    spdlog::warn("test hook LASTGOOD_TEST_CRASH_AFTER={} is set: the process will stop dead after that ledger entry", spec);
  }
  // Segments: a rotation cut short by a crash is completed, or its unused snapshot discarded.
  namespace fs = std::filesystem;
  const std::string next = path_ + ".next";
  std::error_code fec;
  if (fs::exists(next, fec)) {
    if (fs::exists(path_, fec)) {
      spdlog::warn("ledger {}: discarding {}, the snapshot of a rotation that did not finish (the ledger goes on where it was)", path_, next);
      ::unlink(next.c_str());
    } else if (::rename(next.c_str(), path_.c_str()) != 0) {
      throw std::runtime_error("ledger " + path_ + ": cannot finish the rotation a crash cut short (renaming " + next + "): " + std::strerror(errno));
    } else {
      spdlog::warn("ledger {}: finished the rotation a crash cut short ({} is the active segment now)", path_, path_);
    }
  }
  const auto sealed = sealed_segments(path_);
  if (!sealed.empty() && !fs::exists(path_, fec))
    throw std::runtime_error("ledger " + path_ + " is missing while " + std::to_string(sealed.size()) + " sealed segment(s) of it are here (the newest " +
                             sealed.back() + "): lastgood will not begin a new history beside them (restore the file, or move the segments away)");
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd_ >= 0) ::fchmod(fd_, 0600);  // also a ledger made or copied in with a wider mode
  if (fd_ < 0) throw std::runtime_error("cannot open ledger " + path_ + ": " + std::strerror(errno));
  // A constructor that throws runs no destructor: the descriptor is closed here then (found by
  // fuzz/fuzz_ledger: each refused ledger leaked one, until open files ran out).
  struct CloseOnThrow {
    int& fd;
    int count = std::uncaught_exceptions();
    ~CloseOnThrow() {
      if (std::uncaught_exceptions() > count && fd >= 0) {
        ::close(fd);
        fd = -1;
      }
    }
  } close_on_throw{fd_};
  // Replay reads the data of the entries that rebuild state. Of the transitions (the bulk of a
  // long ledger) only those to and from firing are read: incident records start from the breach,
  // and one that ended on its own (firing -> ok) is recovered after a restart as it was before.
  const std::string* key = key_ ? &*key_ : nullptr;
  Scan s = scan(
      path_, key,
      [](const std::string& type, std::string_view data) {
        if (type == name(Event::transition))
          return data.find("\"to\":\"firing\"") != std::string_view::npos || data.find("\"from\":\"firing\"") != std::string_view::npos;
        return type != name(Event::clear_refused);
      },
      Keep::wanted, replay, ScanFrom{.known = false});
  if (!s.report.ok && !s.torn_tail)
    throw std::runtime_error("ledger " + path_ + " is damaged at line " + std::to_string(s.report.bad_line) + ": " + s.report.why +
                             " (run `lastgood ledger verify " + path_ + "`; lastgood will not act on a ledger it cannot trust)");
  keyed_ = s.report.keyed_from != 0;
  keyed_from_ = s.report.keyed_from;
  count_ = s.count;
  first_seq_ = s.first_seq ? s.first_seq : count_ + 1;
  if (count_ == 0 && !sealed.empty())
    throw std::runtime_error("ledger " + path_ + " holds no intact entry while sealed segments of it are here (the newest " + sealed.back() +
                             "): lastgood will not begin a new history beside them");
  if (first_seq_ == 1 && !sealed.empty())
    throw std::runtime_error("ledger " + path_ + " begins a new history (entry 1) while sealed segments of another are here (the newest " + sealed.back() +
                             "): lastgood will not begin a new history beside them (move the segments away with the history they belong to)");
  if (first_seq_ > 1) {
    // The active segment begins with a snapshot chained to the last entry of the sealed segment
    // before it. When that one is here, it must end where the snapshot says.
    if (sealed.empty()) {
      spdlog::info("ledger {}: begins at entry {} with a snapshot; the segments before it are not here (moved away?), so `lastgood ledger verify` checks from there", path_, first_seq_);
    } else {
      const auto last = last_entry_of(sealed.back());
      if (!last || last->first + 1 != first_seq_ || last->second != s.first_prev)
        throw std::runtime_error("ledger " + path_ + " begins with a snapshot at entry " + std::to_string(first_seq_) + " that does not follow " + sealed.back() +
                                 (last ? " (which ends at entry " + std::to_string(last->first) + ")" : " (whose last line does not read as an entry)") +
                                 ": run `lastgood ledger verify " + path_ + "`; lastgood will not act on a ledger it cannot trust");
    }
  }
  bytes_ = s.good_bytes;
  head_ = s.head_hash;
  loaded_ = std::move(s.entries);
  if (s.torn_tail) {
    // Keep the torn bytes for inspection, cut them off, and say so in the ledger itself.
    // Copied in pieces: a torn tail may be anything up to a disk's worth of garbage.
    const std::string aside = path_ + ".torn-" + std::to_string(::time(nullptr));
    std::uint64_t tail_bytes = 0;
    if (auto err = copy_tail_private(path_, s.good_bytes, aside, tail_bytes); !err.empty())
      spdlog::error("ledger {}: keeping the torn bytes aside failed: {}", path_, err);
    if (::ftruncate(fd_, static_cast<off_t>(s.good_bytes)) != 0 || ::fdatasync(fd_) != 0)
      throw std::runtime_error("cannot repair ledger " + path_ + ": " + std::strerror(errno));
    spdlog::error("ledger {}: line {} was truncated ({}); moved {} bytes to {} and recorded it", path_, s.report.bad_line, s.report.why,
                  tail_bytes, aside);
    auto r = try_append(std::string(name(Event::ledger_repaired)), "", {{"line", s.report.bad_line}, {"why", s.report.why}, {"bytes", tail_bytes}, {"moved_to", aside}},
                        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
    // A full disk must not keep lastgood from starting: the repair itself is done; the note of it
    // is retried as any other entry would be (the pipeline holds every action until one succeeds).
    if (!r) spdlog::error("ledger {}: could not record the repair: {}", path_, r.error);
  }
  if (key_ && !keyed_) {
    // The first keyed entry; try_append makes it before any other if this one fails now.
    auto r = try_append(kKeyedType, "", json::object(),
                        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
    if (!r) spdlog::error("ledger {}: could not record that it is keyed from here on: {}", path_, r.error);
  }
}

Ledger::~Ledger() {
  if (fd_ >= 0) {
    if (unsynced_) ::fdatasync(fd_);
    ::close(fd_);
  }
}

AppendResult Ledger::try_append(const std::string& type, const std::string& service, json data, long long ts_ms, Sync sync) {
  if (!broken_.empty()) {
    AppendResult r;
    r.error = broken_;
    return r;
  }
  const bool marker = type == kKeyedType;
  if (key_ && !keyed_ && !marker) {
    auto m = try_append(kKeyedType, "", json::object(), ts_ms);
    if (!m) return m;
  }
  if (marker) {
    if (!key_ || keyed_) {
      AppendResult r;
      r.error = "ledger " + path_ + ": " + kKeyedType + " is written by the ledger itself, once";
      return r;
    }
    data = {{"alg", "HMAC-SHA256"}, {"key_id", ledger_key_id(*key_)}, {"unkeyed_entries", count_}};
  }
  LedgerEntry e;
  e.seq = count_ + 1;
  e.ts_ms = ts_ms;
  e.type = type;
  e.service = service;
  e.data = std::move(data);
  e.prev = head_;
  e.hash = entry_hash(e, key_ && (keyed_ || marker) ? &*key_ : nullptr);
  const std::string line = json_text(to_json(e)) + "\n";
  auto write = io_.write ? io_.write : [](int fd, const void* b, size_t n) { return ::write(fd, b, n); };
  auto sync_fd = io_.fdatasync ? io_.fdatasync : [](int fd) { return ::fdatasync(fd); };
  // Cuts a failed append back to the last whole entry, so the file never holds half a line.
  auto undo = [&](const char* what, int err) {
    std::string why = std::string(what) + ": " + std::strerror(err);
    if (::ftruncate(fd_, static_cast<off_t>(bytes_)) != 0)
      why += std::string("; and cutting the partial entry off failed: ") + std::strerror(errno) + " (the next start moves it aside)";
    AppendResult r;
    r.error = "ledger " + path_ + ": " + why;
    return r;
  };
  size_t off = 0;
  while (off < line.size()) {
    ssize_t n = write(fd_, line.data() + off, line.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return undo("write failed", errno);
    }
    if (n == 0) return undo("write failed", ENOSPC);
    off += static_cast<size_t>(n);
  }
  if (sync == Sync::now || unsynced_ >= 1000) {
    if (sync_fd(fd_) != 0) return undo("fdatasync failed", errno);
    unsynced_ = 0;
  } else {
    ++unsynced_;
  }
  ++count_;
  bytes_ += line.size();
  head_ = e.hash;
  if (marker) {
    keyed_ = true;
    keyed_from_ = e.seq;
  }
  if (after_append_) after_append_(e);
  if (!crash_type_.empty() && e.type == crash_type_ && --crash_count_ == 0) {
    spdlog::default_logger()->flush();
    ::_exit(99);  // test hook: stop dead, as a power cut would
  }
  AppendResult r;
  r.entry = std::move(e);
  return r;
}

AppendResult Ledger::rotate(json state, long long ts_ms) {
  AppendResult r;
  auto fail = [&](std::string why) {
    r.error = "ledger " + path_ + ": rotation: " + why;
    retry_rotation_at_ = count_ + std::max<std::uint64_t>(1, segment_entries_ / 10);
    return r;
  };
  if (!broken_.empty()) return fail(broken_);
  if (key_ && !keyed_) return fail("the ledger is not keyed yet");
  auto sync_fd = io_.fdatasync ? io_.fdatasync : [](int fd) { return ::fdatasync(fd); };
  if (unsynced_ && sync_fd(fd_) != 0) return fail(std::string("fdatasync failed: ") + std::strerror(errno));
  unsynced_ = 0;
  const std::string sealed = sealed_name(path_, first_seq_, count_);
  const std::string next = path_ + ".next";
  LedgerEntry e;
  e.seq = count_ + 1;
  e.ts_ms = ts_ms;
  e.type = kSnapshotType;
  e.data = std::move(state);
  e.data["segment"] = {{"sealed", std::filesystem::path(sealed).filename().string()}, {"first_seq", first_seq_}, {"last_seq", count_}};
  if (keyed_) e.data["keyed"] = {{"from", keyed_from_}, {"key_id", ledger_key_id(*key_)}};
  e.prev = head_;
  e.hash = entry_hash(e, keyed_ ? &*key_ : nullptr);
  const std::string line = json_text(to_json(e)) + "\n";
  // A line is read back whole at the next start (at most 64 MiB, ledger_verify.cpp).
  if (line.size() > (std::size_t{32} << 20))
    return fail("the snapshot would be " + std::to_string(line.size() >> 20) + " MiB, over the 32 MiB a snapshot may take; the active segment keeps growing");
  const int nfd = ::open(next.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (nfd < 0) return fail("cannot create " + next + ": " + std::strerror(errno));
  auto write = io_.write ? io_.write : [](int fd, const void* b, size_t n) { return ::write(fd, b, n); };
  std::string err;
  for (size_t off = 0; off < line.size() && err.empty();) {
    const ssize_t n = write(nfd, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) err = std::string("writing ") + next + ": " + std::strerror(n < 0 ? errno : ENOSPC);
    else off += static_cast<size_t>(n);
  }
  if (err.empty() && sync_fd(nfd) != 0) err = std::string("syncing ") + next + ": " + std::strerror(errno);
  if (!err.empty()) {
    ::close(nfd);
    ::unlink(next.c_str());
    return fail(err);
  }
  test_crash_point("rotate:written");
  if (::rename(path_.c_str(), sealed.c_str()) != 0) {
    err = "renaming " + path_ + " to " + sealed + ": " + std::strerror(errno);
    ::close(nfd);
    ::unlink(next.c_str());
    return fail(err);
  }
  test_crash_point("rotate:sealed");
  if (::rename(next.c_str(), path_.c_str()) != 0) {
    err = "renaming " + next + " to " + path_ + ": " + std::strerror(errno);
    ::close(nfd);
    if (::rename(sealed.c_str(), path_.c_str()) != 0) {
      // Neither forward nor back: appends would go to the sealed file. Stop appending; the next
      // start completes the rotation from FILE.next.
      broken_ = "ledger " + path_ + ": a rotation could neither finish nor be undone (" + err + "; and renaming " + sealed + " back: " +
                std::strerror(errno) + "); restart lastgood to complete it";
      return fail(broken_);
    }
    ::unlink(next.c_str());
    return fail(err);
  }
  {
    // The renames themselves are durable once the folder is synced.
    const std::string dir = std::filesystem::path(path_).parent_path().string();
    const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
  }
  ::close(fd_);
  fd_ = nfd;
  count_ = e.seq;
  first_seq_ = e.seq;
  bytes_ = line.size();
  head_ = e.hash;
  retry_rotation_at_ = 0;
  test_crash_point("rotate:done");
  spdlog::info("ledger {}: sealed entries {}-{} as {}; the active segment begins with a snapshot ({} bytes)", path_, e.data["segment"]["first_seq"].get<std::uint64_t>(),
               e.seq - 1, sealed, line.size());
  r.entry = std::move(e);
  return r;
}

LedgerEntry Ledger::append(const std::string& type, const std::string& service, json data, long long ts_ms, Sync sync) {
  auto r = try_append(type, service, std::move(data), ts_ms, sync);
  if (!r) throw std::runtime_error(r.error);
  return std::move(*r.entry);
}

}  // namespace lastgood::watchdog
