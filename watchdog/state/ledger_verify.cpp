// Reading and checking a ledger file: the line format, the hash chain, the keyed entries.
#include "watchdog/state/ledger_scan.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <cstring>
#include <fstream>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "watchdog/json_text.hpp"
#include "watchdog/state/events.hpp"

namespace lastgood::watchdog {

using nlohmann::json;

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

}  // namespace

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

// The longest line a scan holds (an entry's data is bounded far below it: action output and
// bodies are cut when recorded).
constexpr size_t kMaxLine = size_t{64} << 20;

// Checks one line after another (a file is read in pieces, never whole): the seq, the chain,
// the hash or HMAC, the key's entries. Entries are handed to `keep` as the caller asked.
class Scanner {
 public:
  Scanner(Scan& s, const std::string* key, const WantData& want_data, Keep keep, const std::function<void(LedgerEntry&&)>* sink = nullptr,
          const ScanFrom& from = {})
      : s_(s), key_(key), want_data_(want_data), keep_(keep), sink_(sink && *sink ? sink : nullptr), our_id_(key ? ledger_key_id(*key) : ""),
        base_(from.count), known_(from.known) {
    s_.count = from.count;
    s_.head_hash = from.head_hash;
    s_.report.keyed_from = from.keyed_from;
    s_.report.key_id = from.key_id;
  }

  // One line without its newline (`complete`: it had one). false: damage at this line; the scan stops.
  bool line(std::string_view line, bool complete) {
    LedgerEntry e;
    std::string_view data_text;
    auto err = !complete ? std::optional<std::string>("truncated last line (no newline: a write was cut short)") : read_fields(line, e, data_text);
    if (err) return bad(s_.count + 1, *err);
    if (!known_ && s_.first_seq == 0 && e.seq != 1) {
      // A segment that follows sealed ones: it begins with the snapshot of everything before it,
      // chained to the sealed segment's last entry (checked by the caller when that one is here).
      if (e.type != kSnapshotType)
        return bad(1, "the first entry has seq " + std::to_string(e.seq) + " and is not a snapshot: a ledger begins at seq 1, a segment with a snapshot");
      s_.count = base_ = e.seq - 1;
      s_.head_hash = e.prev;
      const json d = json::parse(data_text.begin(), data_text.end(), nullptr, false);
      if (d.is_object() && d.contains("keyed") && d["keyed"].is_object()) {
        const json& k = d["keyed"];
        s_.report.keyed_from = k.contains("from") && k["from"].is_number_unsigned() ? k["from"].get<std::uint64_t>() : e.seq;
        s_.report.key_id = k.contains("key_id") && k["key_id"].is_string() ? k["key_id"].get<std::string>() : "";
      }
    }
    const std::uint64_t line_no = s_.count + 1;
    if (e.seq != line_no) return bad(line_no, "seq is " + std::to_string(e.seq) + ", expected " + std::to_string(line_no));
    if (e.prev != s_.head_hash)
      return bad(line_no, line_no - 1 > base_ ? "broken chain: prev does not match the hash of line " + std::to_string(line_no - 1 - base_)
                                              : "broken chain: prev does not match the hash of the entry before this file (seq " + std::to_string(line_no - 1) + ")");
    // Lines are written canonical (dump(): sorted keys, no spaces), so the canonical JSON of the
    // entry without its hash is the line's own bytes minus the hash member: hash those bytes
    // instead of re-serialising (stricter too: any byte changed is caught).
    // From the "ledger_keyed" entry on, every hash is an HMAC under the ledger's key.
    if (e.type == kKeyedType) {
      const json d = json::parse(data_text.begin(), data_text.end(), nullptr, false);
      const std::string id = d.is_object() && d.contains("key_id") && d["key_id"].is_string() ? d["key_id"].get<std::string>() : "";
      if (s_.report.keyed_from != 0 && id != s_.report.key_id)
        return bad(line_no, "keyed again with another key (id " + id + ", line " + std::to_string(s_.report.keyed_from) + " named " +
                                s_.report.key_id + "): a ledger has one key");
      if (s_.report.keyed_from == 0) {
        s_.report.keyed_from = line_no;
        s_.report.key_id = id;
      }
    }
    const bool keyed = s_.report.keyed_from != 0;
    if (keyed && key_ == nullptr)
      return bad(line_no, "the ledger is keyed from line " + std::to_string(s_.report.keyed_from) + " (HMAC-SHA256, key id " + s_.report.key_id +
                              ") and no key was given (lastgood ledger verify --key-file, or ledger.hmac_key_file)");
    if (keyed && s_.report.key_id != our_id_)
      return bad(line_no, "the ledger is keyed with key id " + s_.report.key_id + " from line " + std::to_string(s_.report.keyed_from) +
                              "; the key given has id " + our_id_);
    member_.assign(",\"hash\":\"").append(e.hash).append("\"");
    const size_t at = line.find(member_);
    if (at == std::string_view::npos || e.hash.size() != 64 ||
        digest_hex(keyed ? key_ : nullptr, {e.prev, line.substr(0, at), line.substr(at + member_.size())}) != e.hash)
      return bad(line_no, keyed ? "HMAC mismatch: the entry was changed after it was written, by someone without the key"
                                : "hash mismatch: the entry was changed after it was written");
    const bool wanted = keep_ != Keep::none && (!want_data_ || want_data_(e.type, data_text));
    if (wanted) {
      e.data = json::parse(data_text.begin(), data_text.end(), nullptr, false);
      if (e.data.is_discarded()) return bad(line_no, "data is not JSON");  // cannot happen for a line whose hash matched; a guard
    }
    s_.count = line_no;
    s_.head_hash = e.hash;
    s_.good_bytes += line.size() + 1;
    if (s_.first_seq == 0) {
      s_.first_seq = e.seq;
      s_.first_type = e.type;
      s_.first_prev = e.prev;
    }
    if (keep_ == Keep::all) {
      if (sink_) (*sink_)(std::move(e));
      else s_.entries.push_back(std::move(e));
    } else if (keep_ == Keep::wanted && wanted) {
      // What replay reads: no chain fields (the ledger keeps only its head).
      std::string().swap(e.prev);
      std::string().swap(e.hash);
      if (sink_) (*sink_)(std::move(e));
      else s_.entries.push_back(std::move(e));
    }
    return true;
  }

  std::uint64_t base() const { return base_; }

 private:
  // `seq`: the entry's place in the ledger; reported as the line of this file it is on.
  bool bad(std::uint64_t seq, std::string why) {
    s_.report.bad_line = seq > base_ ? seq - base_ : seq;
    s_.report.why = std::move(why);
    return false;
  }
  Scan& s_;
  const std::string* key_;
  const WantData& want_data_;
  Keep keep_;
  const std::function<void(LedgerEntry&&)>* sink_;
  std::string our_id_;
  std::string member_;
  std::uint64_t base_;  // entries before this file
  bool known_;
};

Scan scan_text(std::string_view all, const std::string* key, const WantData& want_data, Keep keep) {
  Scan s;
  Scanner sc(s, key, want_data, keep);
  size_t pos = 0;
  while (pos < all.size()) {
    const size_t nl = all.find('\n', pos);
    const bool complete = nl != std::string::npos;
    if (!sc.line(all.substr(pos, complete ? nl - pos : std::string::npos), complete)) {
      s.torn_tail = !complete || nl + 1 == all.size();
      return s;
    }
    pos = nl + 1;
  }
  s.report.ok = true;
  s.report.entries = s.count;
  return s;
}

const WantData kNoData = [](const std::string&, std::string_view) { return false; };  // the hash covers the data bytes

VerifyReport finish_report(Scan s, const std::string* key) {
  s.report.entries = s.count;
  if (s.count) {
    s.report.head_seq = s.count;
    s.report.head_hash = s.head_hash;
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

Scan scan(const std::string& path, const std::string* key, const WantData& want_data, Keep keep, const std::function<void(LedgerEntry&&)>& sink,
          const ScanFrom& from) {
  Scan s;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    s.report.why = "cannot open " + path;
    return s;
  }
  // In pieces of 1 MiB: memory holds a piece and the entries kept, never the file (a year of
  // history is gigabytes; issue 21).
  Scanner sc(s, key, want_data, keep, &sink, from);
  std::string buf;
  size_t start = 0;  // of the first line not yet checked, in buf
  std::vector<char> piece(1 << 20);
  for (;;) {
    in.read(piece.data(), static_cast<std::streamsize>(piece.size()));
    const auto got = static_cast<size_t>(in.gcount());
    if (in.bad()) {  // a read error is not the end of the file: never taken for a torn tail and cut
      s.report.bad_line = s.count + 1 - sc.base();
      s.report.why = "cannot read " + path + " past entry " + std::to_string(s.count) + ": " + std::strerror(errno);
      return s;
    }
    const bool eof = got == 0;
    if (!eof) {
      buf.erase(0, start);
      start = 0;
      buf.append(piece.data(), got);
    }
    for (;;) {
      const size_t nl = buf.find('\n', start);
      if (nl == std::string::npos) {
        if (buf.size() - start > kMaxLine) {
          // No entry is this long: garbage. Skipped to its end without holding it; damage, and
          // a torn tail when the file ends first (the caller copies the tail aside in pieces).
          s.report.bad_line = s.count + 1 - sc.base();
          s.report.why = "a line longer than " + std::to_string(kMaxLine >> 20) + " MiB: not an entry";
          for (;;) {
            in.read(piece.data(), static_cast<std::streamsize>(piece.size()));
            const auto n = static_cast<size_t>(in.gcount());
            if (n == 0) {
              s.torn_tail = true;
              return s;
            }
            if (std::memchr(piece.data(), '\n', n) != nullptr) return s;
          }
        }
        break;
      }
      if (!sc.line(std::string_view(buf).substr(start, nl - start), true)) {
        // Damage on the file's last line is a torn tail (a write cut short), repaired at open.
        if (nl + 1 == buf.size()) s.torn_tail = in.peek() == std::char_traits<char>::eof();
        return s;
      }
      start = nl + 1;
    }
    if (eof) break;
  }
  if (start < buf.size()) {  // bytes after the last newline
    sc.line(std::string_view(buf).substr(start), false);
    s.torn_tail = true;
    return s;
  }
  s.report.ok = true;
  s.report.entries = s.count;
  return s;
}



std::string sealed_name(const std::string& path, std::uint64_t first, std::uint64_t last) {
  char buf[40];
  std::snprintf(buf, sizeof buf, ".%012llu-%012llu", static_cast<unsigned long long>(first), static_cast<unsigned long long>(last));
  return path + buf;
}

std::vector<std::string> sealed_segments(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  const std::string stem = p.filename().string() + ".";
  std::vector<std::string> out;
  std::error_code ec;
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string n = it->path().filename().string();
    if (n.size() != stem.size() + 25 || n.compare(0, stem.size(), stem) != 0 || n[stem.size() + 12] != '-') continue;
    bool digits = true;
    for (size_t i = stem.size(); i < n.size(); ++i) digits = digits && (i == stem.size() + 12 || (n[i] >= '0' && n[i] <= '9'));
    if (digits) out.push_back((dir / n).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {
// Every segment of the ledger in order, then the active file: one chain across files. `sink`
// (optional) gets every entry.
VerifyReport verify_segments(const std::string& path, const std::string* key, const std::function<void(LedgerEntry&&)>& sink, bool with_data = false) {
  const auto sealed = sealed_segments(path);
  std::vector<std::string> files = sealed;
  files.push_back(path);
  ScanFrom from;
  from.known = false;
  VerifyReport report;
  std::uint64_t from_seq = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    const bool active = i + 1 == files.size();
    if (active && !sealed.empty() && !std::filesystem::exists(files[i])) {
      report.why = files[i] + " is missing, after " + std::to_string(sealed.size()) + " sealed segment(s): the ledger's newest entries are not here";
      report.bad_file = files[i];
      return report;
    }
    Scan s = scan(files[i], key, with_data ? WantData{} : kNoData, sink ? Keep::all : Keep::none, sink, from);
    if (!s.report.ok) {
      report = finish_report(std::move(s), key);
      report.ok = false;
      report.bad_file = files[i];
      report.segments = i;
      return report;
    }
    if (i > 0 && s.first_seq != 0 && s.first_type != kSnapshotType) {
      report.why = files[i] + " does not begin with a snapshot: a segment after another begins with one";
      report.bad_line = 1;
      report.bad_file = files[i];
      return report;
    }
    if (from_seq == 0) from_seq = s.first_seq;
    from = ScanFrom{s.count, s.head_hash, s.report.keyed_from, s.report.key_id, true};
    if (active) report = finish_report(std::move(s), key);
  }
  report.from_seq = from_seq ? from_seq : 1;
  report.segments = sealed.size();
  return report;
}
}  // namespace

VerifyReport verify_ledger(const std::string& path, const std::string* key) { return verify_segments(path, key, {}); }

std::vector<LedgerEntry> read_ledger(const std::string& path, const std::string* key) {
  std::vector<LedgerEntry> out;
  if (!verify_segments(path, key, [&](LedgerEntry&& e) { out.push_back(std::move(e)); }, true).ok) return {};
  return out;
}

VerifyReport verify_ledger_text(std::string_view text, const std::string* key) {
  return finish_report(scan_text(text, key, kNoData, Keep::none), key);
}

std::optional<std::string> ledger_hash_at(const std::string& path, std::uint64_t seq, const std::string* key) {
  // Streamed: the entry's hash is kept, not the history (`ledger verify --head` on a long ledger).
  std::optional<std::string> found;
  verify_segments(path, key, [&](LedgerEntry&& e) {
    if (e.seq == seq) found = std::move(e.hash);
  });
  return found;
}

std::optional<std::pair<std::uint64_t, std::string>> last_entry_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return std::nullopt;
  const auto size = static_cast<std::uint64_t>(in.tellg());
  // Backwards from the end, in growing pieces, until the line before the final newline is whole.
  for (std::uint64_t want = 1 << 16;; want *= 4) {
    const std::uint64_t n = std::min<std::uint64_t>(size, std::min<std::uint64_t>(want, kMaxLine + 2));
    std::string tail(n, '\0');
    in.seekg(static_cast<std::streamoff>(size - n));
    in.read(tail.data(), static_cast<std::streamsize>(n));
    if (!in) return std::nullopt;
    if (tail.empty() || tail.back() != '\n') return std::nullopt;
    tail.pop_back();
    const size_t nl = tail.rfind('\n');
    if (nl == std::string::npos && n < size && n < kMaxLine + 2) continue;  // the line began before this piece
    LedgerEntry e;
    std::string_view data_text;
    if (read_fields(std::string_view(tail).substr(nl == std::string::npos ? 0 : nl + 1), e, data_text)) return std::nullopt;
    return std::make_pair(e.seq, e.hash);
  }
}

}  // namespace lastgood::watchdog
