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
      Keep::wanted, replay);
  if (!s.report.ok && !s.torn_tail)
    throw std::runtime_error("ledger " + path_ + " is damaged at line " + std::to_string(s.report.bad_line) + ": " + s.report.why +
                             " (run `lastgood ledger verify " + path_ + "`; lastgood will not act on a ledger it cannot trust)");
  keyed_ = s.report.keyed_from != 0;
  count_ = s.count;
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
  if (marker) keyed_ = true;
  if (after_append_) after_append_(e);
  if (!crash_type_.empty() && e.type == crash_type_ && --crash_count_ == 0) {
    spdlog::default_logger()->flush();
    ::_exit(99);  // test hook: stop dead, as a power cut would
  }
  AppendResult r;
  r.entry = std::move(e);
  return r;
}

LedgerEntry Ledger::append(const std::string& type, const std::string& service, json data, long long ts_ms, Sync sync) {
  auto r = try_append(type, service, std::move(data), ts_ms, sync);
  if (!r) throw std::runtime_error(r.error);
  return std::move(*r.entry);
}

}  // namespace lastgood::watchdog
