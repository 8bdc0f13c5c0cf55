// Reading and checking a ledger file: the line format, the hash chain, the keyed entries.
#include "watchdog/state/ledger_scan.hpp"

#include <charconv>
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
  Scanner(Scan& s, const std::string* key, const WantData& want_data, Keep keep, const std::function<void(LedgerEntry&&)>* sink = nullptr)
      : s_(s), key_(key), want_data_(want_data), keep_(keep), sink_(sink && *sink ? sink : nullptr), our_id_(key ? ledger_key_id(*key) : "") {}

  // One line without its newline (`complete`: it had one). false: damage at this line; the scan stops.
  bool line(std::string_view line, bool complete) {
    const std::uint64_t line_no = s_.count + 1;
    LedgerEntry e;
    std::string_view data_text;
    auto err = !complete ? std::optional<std::string>("truncated last line (no newline: a write was cut short)") : read_fields(line, e, data_text);
    if (err) return bad(line_no, *err);
    if (e.seq != line_no) return bad(line_no, "seq is " + std::to_string(e.seq) + ", expected " + std::to_string(line_no));
    if (e.prev != s_.head_hash) return bad(line_no, "broken chain: prev does not match the hash of line " + std::to_string(line_no - 1));
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

 private:
  bool bad(std::uint64_t line_no, std::string why) {
    s_.report.bad_line = line_no;
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

Scan scan(const std::string& path, const std::string* key, const WantData& want_data, Keep keep, const std::function<void(LedgerEntry&&)>& sink) {
  Scan s;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    s.report.why = "cannot open " + path;
    return s;
  }
  // In pieces of 1 MiB: memory holds a piece and the entries kept, never the file (a year of
  // history is gigabytes; issue 21).
  Scanner sc(s, key, want_data, keep, &sink);
  std::string buf;
  size_t start = 0;  // of the first line not yet checked, in buf
  std::vector<char> piece(1 << 20);
  for (;;) {
    in.read(piece.data(), static_cast<std::streamsize>(piece.size()));
    const auto got = static_cast<size_t>(in.gcount());
    if (in.bad()) {  // a read error is not the end of the file: never taken for a torn tail and cut
      s.report.bad_line = s.count + 1;
      s.report.why = "cannot read " + path + " past line " + std::to_string(s.count) + ": " + std::strerror(errno);
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
          s.report.bad_line = s.count + 1;
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

std::vector<LedgerEntry> read_ledger(const std::string& path, const std::string* key) {
  auto s = scan(path, key, {}, Keep::all);
  if (!s.report.ok) return {};
  return std::move(s.entries);
}

VerifyReport verify_ledger(const std::string& path, const std::string* key) { return finish_report(scan(path, key, kNoData, Keep::none), key); }

VerifyReport verify_ledger_text(std::string_view text, const std::string* key) {
  return finish_report(scan_text(text, key, kNoData, Keep::none), key);
}

std::optional<std::string> ledger_hash_at(const std::string& path, std::uint64_t seq, const std::string* key) {
  // Streamed: the entry's hash is kept, not the history (`ledger verify --head` on a long ledger).
  std::optional<std::string> found;
  scan(path, key, kNoData, Keep::all, [&](LedgerEntry&& e) {
    if (e.seq == seq) found = std::move(e.hash);
  });
  return found;
}

}  // namespace lastgood::watchdog
