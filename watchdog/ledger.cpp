#include "watchdog/ledger.hpp"

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

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <spdlog/spdlog.h>

namespace lastgood::watchdog {

using nlohmann::json;

std::string write_private(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return "cannot create " + path + ": " + std::strerror(errno);
  ::fchmod(fd, 0600);  // an existing file keeps its mode through O_TRUNC: made private too
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      return "cannot write " + path + ": " + why;
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) return "cannot write " + path + ": " + std::strerror(errno);
  return "";
}

std::string make_private_dir(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) {
    struct stat st{};
    if (::stat(dir.c_str(), &st) == 0 && (st.st_mode & 0077))
      spdlog::warn("{} may be read by other users (mode {:o}): lastgood keeps its ledger and incidents there; chmod 700 it", dir, st.st_mode & 0777);
    return "";
  }
  const auto parent = std::filesystem::path(dir).parent_path();
  if (!parent.empty() && parent != dir) std::filesystem::create_directories(parent, ec);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return "cannot create " + dir + ": " + std::strerror(errno);
  ::chmod(dir.c_str(), 0700);
  return "";
}

void test_crash_point(const char* point) {
  const char* c = std::getenv("LASTGOOD_TEST_CRASH_AFTER");
  if (c && std::strcmp(c, point) == 0) {
    spdlog::default_logger()->flush();
    ::_exit(99);
  }
}

json to_json(const LedgerEntry& e) {
  json j{{"seq", e.seq}, {"ts", e.ts_ms}, {"type", e.type}, {"service", e.service}, {"data", e.data}, {"prev", e.prev}};
  if (!e.hash.empty()) j["hash"] = e.hash;
  return j;
}

namespace {

std::string to_hex(const unsigned char* md, size_t len) {
  static const char* hex = "0123456789abcdef";
  std::string out(len * 2, '0');
  for (size_t i = 0; i < len; ++i) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  return out;
}

// SHA-256 (no key) or HMAC-SHA256 (a key) over several pieces without joining them.
std::string digest_hex(const std::string* key, std::initializer_list<std::string_view> parts) {
  unsigned char md[EVP_MAX_MD_SIZE];
  if (key == nullptr) {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
    for (auto p : parts) EVP_DigestUpdate(ctx, p.data(), p.size());
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    return to_hex(md, len);
  }
  static EVP_MAC* const hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (hmac == nullptr) throw std::runtime_error("OpenSSL offers no HMAC");
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(hmac);
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()};
  size_t len = 0;
  const bool ok = ctx != nullptr && EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(key->data()), key->size(), params) == 1 &&
                  [&] {
                    for (auto p : parts)
                      if (EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(p.data()), p.size()) != 1) return false;
                    return true;
                  }() &&
                  EVP_MAC_final(ctx, md, &len, sizeof md) == 1;
  EVP_MAC_CTX_free(ctx);
  if (!ok) throw std::runtime_error("HMAC-SHA256 failed");
  return to_hex(md, len);
}

constexpr const char* kKeyedType = "ledger_keyed";

}  // namespace

std::string sha256_hex(const std::string& data) { return digest_hex(nullptr, {data}); }

std::string ledger_key_id(const std::string& key) { return digest_hex(&key, {"lastgood ledger key id"}).substr(0, 16); }

std::string entry_hash(const LedgerEntry& e, const std::string* key) {
  LedgerEntry copy = e;
  copy.hash.clear();
  return digest_hex(key, {e.prev, json_text(to_json(copy))});
}

namespace {

// Reads the fields of a canonical line without a JSON parser. Lines are written by dump()
// (sorted keys, no spaces): {"data":...,"hash":"H","prev":"P","seq":N,"service":"S","ts":T,"type":"Y"}.
// The fixed tail after "data" is read from its last ",\"hash\":" on; service names and types
// never contain quotes. The hash check that follows covers every byte, so a line that passes is
// exactly what lastgood wrote.
std::optional<std::string> read_fields(std::string_view line, LedgerEntry& e, std::string_view& data_text) {
  auto fail = [](const char* why) { return std::optional<std::string>(why); };
  if (line.substr(0, 8) != "{\"data\":" || line.empty() || line.back() != '}') return fail("not a ledger entry (expected {\"data\":...})");
  const size_t h = line.rfind(",\"hash\":\"");
  if (h == std::string_view::npos) return fail("no hash");
  data_text = line.substr(8, h - 8);
  size_t pos = h;
  auto expect = [&](std::string_view lit) {
    if (line.substr(pos, lit.size()) != lit) return false;
    pos += lit.size();
    return true;
  };
  auto string_until_quote = [&](std::string& out) {
    size_t q = line.find('"', pos);
    if (q == std::string_view::npos) return false;
    out.assign(line.substr(pos, q - pos));
    pos = q + 1;
    return out.find('\\') == std::string::npos;
  };
  // An oversized number is damage to report at its line, never an exception (std::stoll threw).
  auto number = [&](long long& out) {
    const char* b = line.data() + pos;
    const char* end = line.data() + line.size();
    auto [p, ec] = std::from_chars(b, end, out);
    if (ec != std::errc() || p == b) return false;
    pos += static_cast<size_t>(p - b);
    return true;
  };
  long long seq = 0;
  if (!(expect(",\"hash\":\"") && string_until_quote(e.hash) && expect(",\"prev\":\"") && string_until_quote(e.prev) &&
        expect(",\"seq\":") && number(seq) && expect(",\"service\":\"") && string_until_quote(e.service) && expect(",\"ts\":") &&
        number(e.ts_ms) && expect(",\"type\":\"") && string_until_quote(e.type) && expect("}") && pos == line.size()))
    return fail("not a well-formed entry (expected data, hash, prev, seq, service, ts, type)");
  e.seq = static_cast<std::uint64_t>(seq);
  return std::nullopt;
}

struct Scan {
  std::vector<LedgerEntry> entries;
  VerifyReport report;
  bool torn_tail = false;         // the last line is incomplete or unparsable
  std::uint64_t good_bytes = 0;   // length of the file up to the end of the last good line
};

using WantData = std::function<bool(const std::string&, std::string_view)>;

// want_data(type, data_text): whether to parse that entry's data (replay needs only some).
Scan scan_text(std::string_view all, const std::string* key, const WantData& want_data = {}) {
  Scan s;
  const std::string our_id = key ? ledger_key_id(*key) : "";
  size_t pos = 0;
  std::uint64_t line_no = 0;
  std::string prev;
  while (pos < all.size()) {
    ++line_no;
    size_t nl = all.find('\n', pos);
    const bool last = nl == std::string::npos || nl + 1 == all.size();
    std::string_view line = all.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    LedgerEntry e;
    std::string_view data_text;
    auto err = nl == std::string::npos ? std::optional<std::string>("truncated last line (no newline: a write was cut short)")
                                       : read_fields(line, e, data_text);
    if (err) {
      s.report.bad_line = line_no;
      s.report.why = *err;
      s.torn_tail = last;
      return s;
    }
    if (e.seq != line_no) {
      s.report.bad_line = line_no;
      s.report.why = "seq is " + std::to_string(e.seq) + ", expected " + std::to_string(line_no);
      return s;
    }
    if (e.prev != prev) {
      s.report.bad_line = line_no;
      s.report.why = "broken chain: prev does not match the hash of line " + std::to_string(line_no - 1);
      return s;
    }
    // Lines are written canonical (dump(): sorted keys, no spaces), so the canonical JSON of the
    // entry without its hash is the line's own bytes minus the hash member: hash those bytes
    // instead of re-serialising (stricter too: any byte changed is caught).
    // From the "ledger_keyed" entry on, every hash is an HMAC under the ledger's key.
    if (e.type == kKeyedType) {
      const json d = json::parse(data_text.begin(), data_text.end(), nullptr, false);
      const std::string id = d.is_object() && d.contains("key_id") && d["key_id"].is_string() ? d["key_id"].get<std::string>() : "";
      if (s.report.keyed_from != 0 && id != s.report.key_id) {
        s.report.bad_line = line_no;
        s.report.why = "keyed again with another key (id " + id + ", line " + std::to_string(s.report.keyed_from) + " named " +
                       s.report.key_id + "): a ledger has one key";
        return s;
      }
      if (s.report.keyed_from == 0) {
        s.report.keyed_from = line_no;
        s.report.key_id = id;
      }
    }
    const bool keyed = s.report.keyed_from != 0;
    if (keyed && key == nullptr) {
      s.report.bad_line = line_no;
      s.report.why = "the ledger is keyed from line " + std::to_string(s.report.keyed_from) + " (HMAC-SHA256, key id " + s.report.key_id +
                     ") and no key was given (lastgood ledger verify --key-file, or ledger.hmac_key_file)";
      return s;
    }
    if (keyed && s.report.key_id != our_id) {
      s.report.bad_line = line_no;
      s.report.why = "the ledger is keyed with key id " + s.report.key_id + " from line " + std::to_string(s.report.keyed_from) +
                     "; the key given has id " + our_id;
      return s;
    }
    const std::string member = ",\"hash\":\"" + e.hash + "\"";
    const size_t at = line.find(member);
    if (at == std::string_view::npos || e.hash.size() != 64 ||
        digest_hex(keyed ? key : nullptr, {e.prev, line.substr(0, at), line.substr(at + member.size())}) != e.hash) {
      s.report.bad_line = line_no;
      s.report.why = keyed ? "HMAC mismatch: the entry was changed after it was written, by someone without the key"
                           : "hash mismatch: the entry was changed after it was written";
      return s;
    }
    if (!want_data || want_data(e.type, data_text)) {
      e.data = json::parse(data_text.begin(), data_text.end(), nullptr, false);
      if (e.data.is_discarded()) {  // cannot happen for a line whose hash matched; kept as a guard
        s.report.bad_line = line_no;
        s.report.why = "data is not JSON";
        return s;
      }
    }
    prev = e.hash;
    s.entries.push_back(std::move(e));
    pos = nl + 1;
    s.good_bytes = pos;
  }
  s.report.ok = true;
  s.report.entries = s.entries.size();
  return s;
}

std::optional<std::string> read_whole(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "cannot open " + path;
  std::stringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return std::nullopt;
}

Scan scan(const std::string& path, const std::string* key, const WantData& want_data = {}) {
  std::string all;
  if (auto err = read_whole(path, all)) {
    Scan s;
    s.report.why = *err;
    return s;
  }
  return scan_text(all, key, want_data);
}

const WantData kNoData = [](const std::string&, std::string_view) { return false; };  // the hash covers the data bytes

VerifyReport finish_report(Scan s, const std::string* key) {
  s.report.entries = s.entries.size();
  if (!s.entries.empty()) {
    s.report.head_seq = s.entries.back().seq;
    s.report.head_hash = s.entries.back().hash;
  }
  // A key given for a ledger that holds no keyed entry: it was never written with the key, or it
  // was rewritten without it. Either way nothing in it is vouched for by the key.
  if (s.report.ok && key != nullptr && s.report.keyed_from == 0 && s.report.entries > 0) {
    s.report.ok = false;
    s.report.bad_line = 0;
    s.report.why = "a key was given but no entry is keyed: this ledger was not written with it (or was rewritten without it)";
  }
  return s.report;
}

}  // namespace

std::vector<LedgerEntry> read_ledger(const std::string& path, const std::string* key) {
  auto s = scan(path, key);
  if (!s.report.ok) return {};
  return std::move(s.entries);
}

VerifyReport verify_ledger(const std::string& path, const std::string* key) { return finish_report(scan(path, key, kNoData), key); }

VerifyReport verify_ledger_text(std::string_view text, const std::string* key) { return finish_report(scan_text(text, key, kNoData), key); }

std::optional<std::string> ledger_hash_at(const std::string& path, std::uint64_t seq, const std::string* key) {
  auto s = scan(path, key, kNoData);
  for (const auto& e : s.entries)
    if (e.seq == seq) return e.hash;
  return std::nullopt;
}

Ledger::Ledger(const std::string& state_dir, std::optional<std::string> hmac_key, LedgerIo io)
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
  // long ledger) only those to firing are read: incident records start from the breach.
  const std::string* key = key_ ? &*key_ : nullptr;
  Scan s = scan(path_, key, [](const std::string& type, std::string_view data) {
    if (type == "transition") return data.find("\"to\":\"firing\"") != std::string_view::npos;
    return type != "clear_refused";
  });
  if (!s.report.ok && !s.torn_tail)
    throw std::runtime_error("ledger " + path_ + " is damaged at line " + std::to_string(s.report.bad_line) + ": " + s.report.why +
                             " (run `lastgood ledger verify " + path_ + "`; lastgood will not act on a ledger it cannot trust)");
  keyed_ = s.report.keyed_from != 0;
  count_ = s.entries.size();
  bytes_ = s.good_bytes;
  head_ = s.entries.empty() ? "" : s.entries.back().hash;
  loaded_ = std::move(s.entries);
  if (s.torn_tail) {
    // Keep the torn bytes for inspection, cut them off, and say so in the ledger itself.
    std::ifstream in(path_, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string tail = ss.str().substr(s.good_bytes);
    const std::string aside = path_ + ".torn-" + std::to_string(::time(nullptr));
    if (auto err = write_private(aside, tail); !err.empty()) spdlog::error("ledger {}: keeping the torn bytes aside failed: {}", path_, err);
    if (::ftruncate(fd_, static_cast<off_t>(s.good_bytes)) != 0 || ::fdatasync(fd_) != 0)
      throw std::runtime_error("cannot repair ledger " + path_ + ": " + std::strerror(errno));
    spdlog::error("ledger {}: line {} was truncated ({}); moved {} bytes to {} and recorded it", path_, s.report.bad_line, s.report.why,
                  tail.size(), aside);
    auto r = try_append("ledger_repaired", "", {{"line", s.report.bad_line}, {"why", s.report.why}, {"bytes", tail.size()}, {"moved_to", aside}},
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

StateLock::StateLock(const std::string& state_dir) {
  const std::string path = state_dir + "/lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ >= 0) ::fchmod(fd_, 0600);
  if (fd_ < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {};
    const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK)
      throw std::runtime_error("state_dir " + state_dir + " is in use by another lastgood (pid " + (pid.empty() ? "unknown" : pid) +
                               "), which holds " + path + ": two processes on one ledger would interleave their entries");
    throw std::runtime_error("cannot lock " + path + ": " + std::strerror(err));
  }
  const std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size()))
    spdlog::warn("state_dir lock {}: could not write our pid: {}", path, std::strerror(errno));
}

StateLock::~StateLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

}  // namespace lastgood::watchdog
