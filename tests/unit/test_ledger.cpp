// The ledger: hash chain, tamper detection at the exact line, torn last lines, replay.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <sstream>

#include "watchdog/state/incidents.hpp"
#include "watchdog/state/ledger.hpp"

namespace fs = std::filesystem;
using lastgood::watchdog::Incidents;
using lastgood::watchdog::Ledger;
using lastgood::watchdog::read_ledger;
using lastgood::watchdog::verify_ledger;
using lastgood::watchdog::VerifyReport;
using nlohmann::json;

namespace {

struct Dir {
  fs::path path = fs::temp_directory_path() / ("lastgood-ledger-" + std::to_string(::getpid()) + "-" + std::to_string(rand()));
  Dir() { fs::create_directories(path); }
  ~Dir() { fs::remove_all(path); }
  std::string ledger() const { return (path / "ledger.jsonl").string(); }
};

std::vector<std::string> lines_of(const std::string& file) {
  std::ifstream in(file);
  std::vector<std::string> out;
  std::string l;
  while (std::getline(in, l)) out.push_back(l);
  return out;
}

void write_lines(const std::string& file, const std::vector<std::string>& lines, bool final_newline = true) {
  std::ofstream out(file, std::ios::trunc);
  for (size_t i = 0; i < lines.size(); ++i) out << lines[i] << (i + 1 < lines.size() || final_newline ? "\n" : "");
}

void fill(const Dir& d, int n) {
  Ledger l(d.path.string());
  for (int i = 0; i < n; ++i)
    l.append(i % 2 ? "decision" : "transition", "svc" + std::to_string(i % 3), {{"i", i}, {"reason", "r"}, {"nested", {{"x", 1.5}}}}, 1000 + i);
}

}  // namespace

TEST_CASE("an intact ledger verifies and replays in order", "[ledger]") {
  Dir d;
  fill(d, 50);
  auto rep = verify_ledger(d.ledger());
  CHECK(rep.ok);
  CHECK(rep.entries == 50);
  const auto all = read_ledger(d.ledger());
  REQUIRE(all.size() == 50);
  CHECK(all[0].prev.empty());
  for (size_t i = 1; i < all.size(); ++i) CHECK(all[i].prev == all[i - 1].hash);
  CHECK(all[7].data["i"] == 7);
  Ledger again(d.path.string());
  CHECK(again.size() == 50);
  // Replay is handed what it reads, in order: the decisions, not the transitions that are not
  // firing, and without the chain fields (memory follows state, not history).
  auto es = again.take_loaded();
  REQUIRE(es.size() == 25);
  for (size_t i = 0; i < es.size(); ++i) {
    CHECK(es[i].type == "decision");
    CHECK(es[i].seq == 2 * i + 2);
    CHECK(es[i].data["i"] == 2 * i + 1);
    CHECK(es[i].hash.empty());
  }
  auto e = again.append("x", "s", json::object(), 5);  // appends continue the chain
  CHECK(e.seq == 51);
  CHECK(e.prev == all.back().hash);
  CHECK(verify_ledger(d.ledger()).ok);
}

TEST_CASE("tampering with any field of any line fails verification at that line", "[ledger]") {
  Dir d;
  fill(d, 12);
  const auto original = lines_of(d.ledger());
  for (size_t line = 0; line < original.size(); ++line) {
    for (const char* field : {"seq", "ts", "type", "service", "data", "prev", "hash"}) {
      auto lines = original;
      json j = json::parse(lines[line]);
      if (j[field].is_number()) j[field] = j[field].get<long long>() + 1;
      else if (j[field].is_string()) j[field] = j[field].get<std::string>() + "x";
      else j[field]["tampered"] = true;
      lines[line] = j.dump();
      write_lines(d.ledger(), lines);
      auto rep = verify_ledger(d.ledger());
      INFO("line " << line + 1 << " field " << field << ": " << rep.why);
      CHECK_FALSE(rep.ok);
      CHECK(rep.bad_line == line + 1);
    }
  }
  write_lines(d.ledger(), original);
  CHECK(verify_ledger(d.ledger()).ok);
}

TEST_CASE("removing or swapping lines breaks the chain where it happens", "[ledger]") {
  Dir d;
  fill(d, 10);
  auto lines = lines_of(d.ledger());
  auto removed = lines;
  removed.erase(removed.begin() + 4);
  write_lines(d.ledger(), removed);
  auto rep = verify_ledger(d.ledger());
  CHECK_FALSE(rep.ok);
  CHECK(rep.bad_line == 5);
  auto swapped = lines;
  std::swap(swapped[2], swapped[3]);
  write_lines(d.ledger(), swapped);
  CHECK(verify_ledger(d.ledger()).bad_line == 3);
}

TEST_CASE("a truncated last line is detected, and on open moved aside and recorded, never accepted", "[ledger]") {
  Dir d;
  fill(d, 5);
  auto lines = lines_of(d.ledger());
  lines.back() = lines.back().substr(0, lines.back().size() / 2);  // a crash mid-write
  write_lines(d.ledger(), lines, /*final_newline=*/false);
  auto rep = verify_ledger(d.ledger());
  CHECK_FALSE(rep.ok);
  CHECK(rep.bad_line == 5);
  CHECK_THAT(rep.why, Catch::Contains("truncated"));

  {
    Ledger l(d.path.string());  // repairs: cuts the torn line and records it
    CHECK(l.size() == 5);  // 4 intact and the repair's own entry
    CHECK(l.take_loaded().size() == 2);  // the decisions of those 4
  }
  auto after = read_ledger(d.ledger());
  REQUIRE(after.size() == 5);
  CHECK(after.back().type == "ledger_repaired");
  CHECK(after.back().data["line"] == 5);
  bool aside = false;
  for (const auto& e : fs::directory_iterator(d.path)) aside = aside || e.path().filename().string().rfind("ledger.jsonl.torn-", 0) == 0;
  CHECK(aside);
  CHECK(verify_ledger(d.ledger()).ok);
}

TEST_CASE("damage in the middle stops lastgood from opening the ledger", "[ledger]") {
  Dir d;
  fill(d, 5);
  auto lines = lines_of(d.ledger());
  lines[1] = "{not json";
  write_lines(d.ledger(), lines);
  CHECK_THROWS_WITH(Ledger(d.path.string()), Catch::Contains("damaged at line 2"));
}

TEST_CASE("deferred appends chain like the others and are on disk after close; replay reads only transitions to or from firing", "[ledger]") {
  Dir d;
  Incidents live;
  {
    Ledger l(d.path.string());
    auto add = [&](const std::string& type, json data, long long ts, Ledger::Sync sync) { live.observe(l.append(type, "a", std::move(data), ts, sync)); };
    add("transition", {{"from", "ok"}, {"to", "pending"}, {"trigger", "t"}}, 1, Ledger::Sync::deferred);
    add("transition", {{"from", "pending"}, {"to", "firing"}, {"trigger", "t"}, {"severity", "P1"}}, 2, Ledger::Sync::deferred);
    add("decision", {{"kind", "hold"}, {"trigger", "t"}, {"severity", "P1"}}, 3, Ledger::Sync::now);  // durable: syncs the two before it too
    add("transition", {{"from", "firing"}, {"to", "ok"}, {"trigger", "t"}}, 4, Ledger::Sync::deferred);
    add("transition", {{"from", "ok"}, {"to", "pending"}, {"trigger", "t"}}, 5, Ledger::Sync::deferred);
  }  // closing syncs the deferred tail
  auto rep = verify_ledger(d.ledger());
  CHECK(rep.ok);
  CHECK(rep.entries == 5);
  Ledger again(d.path.string());
  CHECK(again.size() == 5);
  auto es = again.take_loaded();
  REQUIRE(es.size() == 3);  // transitions are verified, not parsed or kept...
  CHECK(es[0].data["to"] == "firing");  // ...except those to firing, where incident records start,
  CHECK(es[1].data["kind"] == "hold");
  CHECK(es[2].data["from"] == "firing");  // and those from it, where one ends on its own
  // The incident record after a restart is the record before it: recovered, not still firing
  // (found while building snapshots: replay read only the transitions to firing).
  Incidents replayed;
  for (const auto& e : es) replayed.observe(e);
  REQUIRE(live.all().size() == 1);
  REQUIRE(replayed.all().size() == 1);
  CHECK(Incidents::to_json(live.all().front())["status"] == "recovered");
  CHECK(Incidents::to_json(replayed.all().front()) == Incidents::to_json(live.all().front()));
  CHECK_FALSE(replayed.open_for("a"));
  const auto all = read_ledger(d.ledger());
  REQUIRE(all.size() == 5);
  CHECK(all[3].prev == all[2].hash);
}

TEST_CASE("an append is all or nothing: a short write, a full disk or a failed fdatasync is cut back to the last whole entry", "[ledger]") {
  Dir d;
  Ledger l(d.path.string());
  l.append("a", "", {{"i", 1}}, 1000);
  const auto whole = fs::file_size(d.ledger());
  int calls = 0;
  SECTION("a short write, then ENOSPC") {
    l.set_io({[&](int fd, const void* b, size_t n) -> ssize_t {
                if (++calls == 1) return ::write(fd, b, n / 2);  // half the line goes in
                errno = ENOSPC;
                return -1;
              },
              {}});
  }
  SECTION("the write goes in, fdatasync fails (EIO)") {
    l.set_io({{}, [&](int) {
                ++calls;
                errno = EIO;
                return -1;
              }});
  }
  auto r = l.try_append("b", "", {{"i", 2}}, 2000);
  CHECK_FALSE(r);
  CHECK_THAT(r.error, Catch::Contains(d.ledger()));
  CHECK(calls >= 1);
  CHECK(fs::file_size(d.ledger()) == whole);  // no half line left behind
  CHECK(l.size() == 1);
  CHECK_THROWS_AS(l.append("b", "", {{"i", 2}}, 2000), std::runtime_error);
  // The disk comes back: the next append continues the chain where it was.
  l.set_io({});
  auto ok = l.try_append("c", "", {{"i", 3}}, 3000);
  REQUIRE(ok);
  CHECK(ok.entry->seq == 2);
  auto rep = verify_ledger(d.ledger());
  CHECK(rep.ok);
  CHECK(rep.entries == 2);
}

TEST_CASE("an oversized seq or ts is damage reported at its line, never an exception", "[ledger]") {
  Dir d;
  fill(d, 3);
  auto lines = lines_of(d.ledger());
  for (const char* field : {"\"seq\":2", "\"ts\":1001"}) {
    auto copy = lines;
    const auto at = copy[1].find(field);
    REQUIRE(at != std::string::npos);
    copy[1].replace(at, std::strlen(field), std::string(field).substr(0, std::strlen(field) - 1) + "99999999999999999999999");
    write_lines(d.ledger(), copy);
    VerifyReport rep;
    REQUIRE_NOTHROW(rep = verify_ledger(d.ledger()));
    CHECK_FALSE(rep.ok);
    CHECK(rep.bad_line == 2);
    CHECK_THROWS_WITH(Ledger(d.path.string()), Catch::Contains("line 2"));
  }
}

TEST_CASE("one process per state_dir: a second lock names the holder's pid", "[ledger]") {
  Dir d;
  lastgood::watchdog::StateLock first(d.path.string());
  CHECK_THROWS_WITH(lastgood::watchdog::StateLock(d.path.string()), Catch::Contains("pid " + std::to_string(::getpid())));
}

TEST_CASE("a ledger refused at open leaves no descriptor open (found by fuzz_ledger)", "[ledger]") {
  Dir d;
  write_lines(d.ledger(), {"{\"data\":{},\"hash\":\"00\",\"prev\":\"\",\"seq\":1,\"service\":\"a\",\"ts\":1,\"type\":\"x\"}", "{}"});
  auto open_fds = [] {
    int n = 0;
    for (const auto& e : fs::directory_iterator("/proc/self/fd")) n += e.path().filename().string() != "." ? 1 : 0;
    return n;
  };
  const int before = open_fds();
  for (int i = 0; i < 50; ++i) CHECK_THROWS(Ledger(d.path.string()));
  CHECK(open_fds() <= before + 1);  // (the directory iterator's own descriptor)
}

namespace {

// What someone who can write the file but lacks the key can do: rewrite entries and recompute a
// consistent plain SHA-256 chain over them.
void rechain_without_key(const std::string& file, size_t from_line, const std::function<void(json&)>& edit) {
  auto ls = lines_of(file);
  std::string prev;
  for (size_t i = 0; i < ls.size(); ++i) {
    json j = json::parse(ls[i]);
    if (i + 1 >= from_line) {
      if (i + 1 == from_line) edit(j);
      j["prev"] = prev;
      j.erase("hash");
      j["hash"] = lastgood::watchdog::sha256_hex(prev + j.dump());
      ls[i] = j.dump();
    }
    prev = j["hash"].get<std::string>();
  }
  write_lines(file, ls);
}

}  // namespace

TEST_CASE("a keyed ledger: HMACs from its ledger_keyed entry on; the key is needed to verify, and the right one", "[ledger]") {
  Dir d;
  const std::string key = "0123456789abcdef0123456789abcdef", other = "fedcba9876543210fedcba9876543210";
  {
    Ledger l(d.path.string(), key);
    for (int i = 0; i < 5; ++i) l.append("decision", "app", {{"kind", "execute"}, {"n", i}}, 1000 + i);
    auto r = l.try_append("ledger_keyed", "", json::object(), 2000);  // only the ledger writes it, once
    CHECK_FALSE(r);
  }
  auto es = read_ledger(d.ledger(), &key);
  REQUIRE(es.size() == 6);
  CHECK(es[0].type == "ledger_keyed");
  CHECK(es[0].data["key_id"] == lastgood::watchdog::ledger_key_id(key));
  CHECK(es[0].data["alg"] == "HMAC-SHA256");
  CHECK(es[0].data.dump().find(key) == std::string::npos);  // the key itself is nowhere
  {
    std::stringstream all;
    all << std::ifstream(d.ledger()).rdbuf();
    CHECK(all.str().find(key) == std::string::npos);
  }
  CHECK(es[1].hash == lastgood::watchdog::entry_hash(es[1], &key));
  CHECK(es[1].hash != lastgood::watchdog::entry_hash(es[1]));

  VerifyReport ok = verify_ledger(d.ledger(), &key);
  CHECK(ok.ok);
  CHECK(ok.entries == 6);
  CHECK(ok.keyed_from == 1);

  VerifyReport nokey = verify_ledger(d.ledger());
  CHECK_FALSE(nokey.ok);
  CHECK(nokey.bad_line == 1);
  CHECK_THAT(nokey.why, Catch::Contains("no key was given"));

  VerifyReport wrong = verify_ledger(d.ledger(), &other);
  CHECK_FALSE(wrong.ok);
  CHECK_THAT(wrong.why, Catch::Contains("the key given has id " + lastgood::watchdog::ledger_key_id(other)));

  // lastgood refuses to run on a keyed ledger without its key, or with another key.
  CHECK_THROWS_WITH(Ledger(d.path.string()), Catch::Contains("no key was given"));
  CHECK_THROWS_WITH(Ledger(d.path.string(), other), Catch::Contains("key given has id"));
  Ledger again(d.path.string(), key);
  CHECK(again.take_loaded().size() == 6);
  again.append("decision", "app", {{"kind", "hold"}}, 3000);
  CHECK(verify_ledger(d.ledger(), &key).ok);
}

TEST_CASE("a keyed ledger rewritten by someone without the key fails at the first line they changed", "[ledger]") {
  Dir d;
  const std::string key = "0123456789abcdef0123456789abcdef";
  {
    Ledger l(d.path.string(), key);
    for (int i = 0; i < 6; ++i) l.append("decision", "app", {{"kind", "execute"}, {"n", i}}, 1000 + i);
  }
  REQUIRE(verify_ledger(d.ledger(), &key).ok);
  rechain_without_key(d.ledger(), 4, [](json& j) { j["data"]["kind"] = "hold"; });
  CHECK(verify_ledger(d.ledger()).ok == false);  // keyed entries cannot be checked without the key at all
  VerifyReport rep = verify_ledger(d.ledger(), &key);
  CHECK_FALSE(rep.ok);
  CHECK(rep.bad_line == 4);
  CHECK_THAT(rep.why, Catch::Contains("HMAC mismatch"));
  CHECK(rep.entries == 3);
}

TEST_CASE("a keyed ledger replaced by an unkeyed one is caught by verify with the key", "[ledger]") {
  Dir d;
  const std::string key = "0123456789abcdef0123456789abcdef";
  {
    Ledger l(d.path.string(), key);
    l.append("decision", "app", {{"kind", "execute"}}, 1000);
  }
  fs::remove(d.ledger());
  {
    Ledger l(d.path.string());  // the forger's own, consistent, unkeyed chain
    l.append("decision", "app", {{"kind", "hold"}}, 1000);
  }
  CHECK(verify_ledger(d.ledger()).ok);
  VerifyReport rep = verify_ledger(d.ledger(), &key);
  CHECK_FALSE(rep.ok);
  CHECK_THAT(rep.why, Catch::Contains("no entry is keyed"));
}

TEST_CASE("a ledger keyed later: the unkeyed prefix is covered by the first HMAC after it", "[ledger]") {
  Dir d;
  const std::string key = "0123456789abcdef0123456789abcdef";
  fill(d, 3);
  {
    Ledger l(d.path.string(), key);  // the key is configured now: the ledger_keyed entry comes next
    l.append("decision", "app", {{"kind", "execute"}}, 5000);
  }
  auto es = read_ledger(d.ledger(), &key);
  REQUIRE(es.size() == 5);
  CHECK(es[3].type == "ledger_keyed");
  CHECK(es[3].data["unkeyed_entries"] == 3);
  VerifyReport ok = verify_ledger(d.ledger(), &key);
  CHECK(ok.ok);
  CHECK(ok.keyed_from == 4);
  // Rewriting the unkeyed prefix with a consistent plain chain breaks the link to the keyed part.
  auto ls = lines_of(d.ledger());
  std::vector<std::string> prefix(ls.begin(), ls.begin() + 3), rest(ls.begin() + 3, ls.end());
  write_lines(d.ledger(), prefix);
  rechain_without_key(d.ledger(), 2, [](json& j) { j["data"]["i"] = 99; });
  auto forged = lines_of(d.ledger());
  forged.insert(forged.end(), rest.begin(), rest.end());
  write_lines(d.ledger(), forged);
  VerifyReport rep = verify_ledger(d.ledger(), &key);
  CHECK_FALSE(rep.ok);
  CHECK(rep.bad_line == 4);
  CHECK_THAT(rep.why, Catch::Contains("broken chain"));
}

TEST_CASE("verify_ledger_text checks bytes in memory as verify_ledger checks a file", "[ledger]") {
  Dir d;
  fill(d, 4);
  std::stringstream all;
  all << std::ifstream(d.ledger()).rdbuf();
  CHECK(lastgood::watchdog::verify_ledger_text(all.str()).ok);
  CHECK(lastgood::watchdog::verify_ledger_text(all.str()).head_hash == verify_ledger(d.ledger()).head_hash);
  std::string broken = all.str();
  broken[broken.size() / 2] ^= 1;
  CHECK_FALSE(lastgood::watchdog::verify_ledger_text(broken).ok);
}

TEST_CASE("an entry holding bytes that are not UTF-8 (from the network) is written with U+FFFD and verifies", "[ledger]") {
  Dir d;
  {
    Ledger l(d.path.string());
    REQUIRE_NOTHROW(l.append("approval_refused", "app", {{"source", std::string("10.0.0.1\xbb\xff")}, {"proposal", std::string("p-\xc3")}}, 1000));
    l.append("decision", "app", {{"kind", "hold"}}, 1001);
  }
  CHECK(verify_ledger(d.ledger()).ok);
  auto es = read_ledger(d.ledger());
  REQUIRE(es.size() == 2);
  CHECK(es[0].data["source"] == "10.0.0.1\xef\xbf\xbd\xef\xbf\xbd");
  Ledger again(d.path.string());
  CHECK(again.take_loaded().size() == 2);
}

TEST_CASE("a keyed ledger on a full disk: the ledger_keyed entry comes before any other, whole or not at all", "[ledger]") {
  Dir d;
  const std::string key = "0123456789abcdef0123456789abcdef";
  fill(d, 2);
  const auto whole = fs::file_size(d.ledger());
  bool full = true;
  lastgood::watchdog::LedgerIo io{[&](int fd, const void* b, size_t n) -> ssize_t {
                                    if (!full) return ::write(fd, b, n);
                                    errno = ENOSPC;
                                    return -1;
                                  },
                                  {}};
  Ledger l(d.path.string(), key, io);  // the key is new: its entry cannot be written now
  CHECK(fs::file_size(d.ledger()) == whole);
  auto r = l.try_append("decision", "app", {{"kind", "hold"}}, 5000);  // nothing unkeyed is written after a key is given
  CHECK_FALSE(r);
  CHECK_THAT(r.error, Catch::Contains("write failed"));
  CHECK(fs::file_size(d.ledger()) == whole);
  full = false;  // the disk comes back
  REQUIRE(l.try_append("decision", "app", {{"kind", "hold"}}, 6000));
  auto es = read_ledger(d.ledger(), &key);
  REQUIRE(es.size() == 4);
  CHECK(es[2].type == "ledger_keyed");
  CHECK(es[3].type == "decision");
  const auto rep = verify_ledger(d.ledger(), &key);
  CHECK(rep.ok);
  CHECK(rep.keyed_from == 3);
}

TEST_CASE("a ledger is read in pieces: entries across piece boundaries verify, and a huge garbage line is never held", "[ledger]") {
  Dir d;
  {
    Ledger l(d.path.string());
    // About 0.3 MiB each: several straddle the scanner's 1 MiB pieces.
    for (int i = 0; i < 12; ++i) l.append("decision", "app", {{"kind", "hold"}, {"pad", std::string(300'000 + i, 'a' + i)}}, 1000 + i);
  }
  auto rep = verify_ledger(d.ledger());
  CHECK(rep.ok);
  CHECK(rep.entries == 12);
  const auto all = read_ledger(d.ledger());
  REQUIRE(all.size() == 12);
  CHECK(all[11].data["pad"].get<std::string>().size() == 300'011);
  const auto good = fs::file_size(d.ledger());

  SECTION("70 MiB of garbage without a newline after the last entry: a torn tail, copied aside and cut") {
    {
      std::ofstream out(d.ledger(), std::ios::app | std::ios::binary);
      std::string junk(1 << 20, 'x');
      for (int i = 0; i < 70; ++i) out << junk;
    }
    auto torn = verify_ledger(d.ledger());
    CHECK_FALSE(torn.ok);
    CHECK(torn.bad_line == 13);
    {
      Ledger l(d.path.string());
      CHECK(l.size() == 13);  // the 12 and the repair's entry
    }
    CHECK(verify_ledger(d.ledger()).ok);
    const auto after = read_ledger(d.ledger());
    REQUIRE(after.size() == 13);
    CHECK(after.back().type == "ledger_repaired");
    CHECK(after.back().data["bytes"] == 70u << 20);
    int asides = 0;
    for (const auto& e : fs::directory_iterator(d.path))
      if (e.path().filename().string().rfind("ledger.jsonl.torn-", 0) == 0) {
        ++asides;
        CHECK(fs::file_size(e.path()) == 70u << 20);
      }
    CHECK(asides == 1);
    CHECK(fs::file_size(d.ledger()) < good + 4096);  // the garbage is cut off; only the repair's entry was added
  }
  SECTION("the same garbage followed by a newline and more: damage in the middle, refused") {
    {
      std::ofstream out(d.ledger(), std::ios::app | std::ios::binary);
      std::string junk(1 << 20, 'x');
      for (int i = 0; i < 70; ++i) out << junk;
      out << "\n{}\n";
    }
    auto bad = verify_ledger(d.ledger());
    CHECK_FALSE(bad.ok);
    CHECK(bad.bad_line == 13);
    CHECK_THAT(bad.why, Catch::Contains("longer than 64 MiB"));
    CHECK_THROWS_WITH(Ledger(d.path.string()), Catch::Contains("damaged at line 13"));
  }
}

TEST_CASE("a ledger opened with a replay sink hands each entry replay reads over as it is read, and keeps none", "[ledger]") {
  Dir d;
  fill(d, 30);  // transitions (not firing) and decisions, alternately
  std::vector<lastgood::watchdog::LedgerEntry> got;
  {
    Ledger l(d.path.string(), std::nullopt, {}, [&](lastgood::watchdog::LedgerEntry&& e) { got.push_back(std::move(e)); });
    CHECK(l.size() == 30);
    CHECK(l.take_loaded().empty());
  }
  REQUIRE(got.size() == 15);
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].seq == 2 * i + 2);
    CHECK(got[i].data["i"] == 2 * i + 1);
  }
  // Damage after entries were handed over still refuses the ledger: the receiver must not act on
  // what it was given before the constructor returned.
  auto lines = lines_of(d.ledger());
  lines[20] = "{not json";
  write_lines(d.ledger(), lines);
  int handed = 0;
  CHECK_THROWS_WITH(Ledger(d.path.string(), std::nullopt, {}, [&](lastgood::watchdog::LedgerEntry&&) { ++handed; }),
                    Catch::Contains("damaged at line 21"));
  CHECK(handed == 10);
}

// ---- segments (issue 21): a ledger sealed in segments, each after the first beginning with a snapshot

namespace {
const json kState = {{"services", json::object()}, {"carried", json::array()}};

std::string sealed(const Dir& d, int first, int last) { return lastgood::watchdog::sealed_name(d.ledger(), first, last); }

// Two rotations: entries 1-10 sealed, 11 the snapshot, 12-16 sealed with it, 17 the next snapshot, 18-20.
void two_rotations(const Dir& d, const std::string* key = nullptr) {
  Ledger l(d.path.string(), key ? std::optional<std::string>(*key) : std::nullopt);
  const int base = key ? 1 : 0;  // a keyed ledger's first entry is its ledger_keyed
  for (int i = base; i < 10; ++i) l.append("decision", "a", {{"kind", "hold"}, {"i", i}}, 1000 + i);
  REQUIRE(l.rotate(kState, 2000));
  CHECK(l.first_seq() == 11);
  for (int i = 0; i < 5; ++i) l.append("decision", "a", {{"kind", "hold"}, {"j", i}}, 3000 + i);
  REQUIRE(l.rotate(kState, 4000));
  for (int i = 0; i < 3; ++i) l.append("decision", "a", {{"kind", "hold"}, {"k", i}}, 5000 + i);
}
}  // namespace

TEST_CASE("a ledger rotates into sealed segments; verify walks them as one chain; a restart reads the active segment only", "[ledger][segments]") {
  Dir d;
  two_rotations(d);
  CHECK(fs::exists(sealed(d, 1, 10)));
  CHECK(fs::exists(sealed(d, 11, 16)));
  CHECK(lastgood::watchdog::sealed_segments(d.ledger()) == std::vector<std::string>{sealed(d, 1, 10), sealed(d, 11, 16)});
  CHECK(lines_of(d.ledger()).size() == 4);  // the snapshot and three entries
  const auto rep = verify_ledger(d.ledger());
  CHECK(rep.ok);
  CHECK(rep.entries == 20);
  CHECK(rep.segments == 2);
  CHECK(rep.from_seq == 1);
  const auto all = read_ledger(d.ledger());
  REQUIRE(all.size() == 20);
  CHECK(all[10].type == "snapshot");
  CHECK(all[10].prev == all[9].hash);  // chained to the last entry it seals
  CHECK(all[10].data["segment"] == json{{"sealed", fs::path(sealed(d, 1, 10)).filename().string()}, {"first_seq", 1}, {"last_seq", 10}});
  CHECK(lastgood::watchdog::ledger_hash_at(d.ledger(), 5) == all[4].hash);
  // A restart hands over the active segment only, beginning with its snapshot.
  std::vector<std::uint64_t> seqs;
  Ledger again(d.path.string(), std::nullopt, {}, [&](lastgood::watchdog::LedgerEntry&& e) {
    seqs.push_back(e.seq);
    if (seqs.size() == 1) CHECK(e.type == "snapshot");
  });
  CHECK(seqs == std::vector<std::uint64_t>{17, 18, 19, 20});
  CHECK(again.size() == 20);
  CHECK(again.active_entries() == 4);
  CHECK(again.append("decision", "a", {{"kind", "hold"}}, 6000).seq == 21);
  CHECK(verify_ledger(d.ledger()).entries == 21);
}

TEST_CASE("segments: a changed sealed segment is found by verify, naming the file; a snapshot that does not follow its segment is refused", "[ledger][segments]") {
  Dir d;
  two_rotations(d);
  auto ls = lines_of(sealed(d, 11, 16));
  const auto original = ls;
  ls[2].replace(ls[2].find("\"j\":1"), 5, "\"j\":7");
  write_lines(sealed(d, 11, 16), ls);
  auto rep = verify_ledger(d.ledger());
  CHECK_FALSE(rep.ok);
  CHECK(rep.bad_file == sealed(d, 11, 16));
  CHECK(rep.bad_line == 3);
  CHECK_THAT(rep.why, Catch::Contains("hash mismatch"));
  // The newest sealed segment cut short: the active segment's snapshot no longer follows it.
  ls = original;
  ls.pop_back();
  write_lines(sealed(d, 11, 16), ls);
  CHECK_THROWS_WITH(Ledger(d.path.string()), Catch::Contains("does not follow"));
  CHECK_FALSE(verify_ledger(d.ledger()).ok);
  write_lines(sealed(d, 11, 16), original);
  CHECK(verify_ledger(d.ledger()).ok);
  // Sealed segments moved away (archived): the ledger opens from its snapshot; verify checks from there.
  fs::remove(sealed(d, 1, 10));
  fs::remove(sealed(d, 11, 16));
  rep = verify_ledger(d.ledger());
  CHECK(rep.ok);
  CHECK(rep.from_seq == 17);
  CHECK(rep.entries == 20);
  Ledger l(d.path.string());
  CHECK(l.size() == 20);
}

TEST_CASE("segments: the active file missing, or replaced by a new history, beside sealed segments is refused", "[ledger][segments]") {
  Dir d;
  two_rotations(d);
  fs::rename(d.ledger(), d.ledger() + ".kept");
  CHECK_THROWS_WITH(Ledger(d.path.string()), Catch::Contains("missing while 2 sealed segment(s)"));
  CHECK_FALSE(fs::exists(d.ledger()));
  CHECK_FALSE(verify_ledger(d.ledger()).ok);
  // A fresh ledger.jsonl (entry 1 onwards) beside the sealed segments of another history.
  {
    Dir other;
    fill(other, 3);
    fs::copy_file(other.ledger(), d.ledger());
  }
  CHECK_THROWS_WITH(Ledger(d.path.string()), Catch::Contains("begins a new history"));
  CHECK_FALSE(verify_ledger(d.ledger()).ok);
  fs::remove(d.ledger());
  fs::rename(d.ledger() + ".kept", d.ledger());
  CHECK(verify_ledger(d.ledger()).ok);
  CHECK_NOTHROW(Ledger(d.path.string()));
}

TEST_CASE("segments: a rotation cut short by a crash is completed, or discarded, at the next open", "[ledger][segments]") {
  for (const std::string point : {"rotate:written", "rotate:sealed"}) {
    Dir d;
    fill(d, 12);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::setenv("LASTGOOD_TEST_CRASH_AFTER", point.c_str(), 1);
      Ledger l(d.path.string());
      (void)l.rotate(kState, 9000);  // stops dead at the point
      ::_exit(0);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    INFO(point);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 99);
    CHECK(fs::exists(d.ledger() + ".next"));
    Ledger l(d.path.string());
    CHECK_FALSE(fs::exists(d.ledger() + ".next"));
    if (point == "rotate:written") {  // not yet sealed: the snapshot is dropped, the ledger goes on as it was
      CHECK(lastgood::watchdog::sealed_segments(d.ledger()).empty());
      CHECK(l.first_seq() == 1);
    } else {  // sealed: the rotation is finished
      CHECK(fs::exists(sealed(d, 1, 12)));
      CHECK(l.first_seq() == 13);
    }
    CHECK(l.size() == (point == "rotate:written" ? 12u : 13u));
    l.append("decision", "a", {{"kind", "hold"}}, 9500);
    CHECK(verify_ledger(d.ledger()).ok);
  }
}

TEST_CASE("segments: a rotation that cannot write its snapshot changes nothing, and is tried again later", "[ledger][segments]") {
  Dir d;
  Ledger l(d.path.string());
  l.set_segment_entries(10);
  for (int i = 0; i < 10; ++i) l.append("decision", "a", {{"kind", "hold"}}, 1000 + i);
  REQUIRE(l.rotation_due());
  l.set_io({[](int, const void*, size_t) -> ssize_t {
              errno = ENOSPC;
              return -1;
            },
            {}});
  auto r = l.rotate(kState, 2000);
  CHECK_FALSE(r);
  CHECK_THAT(r.error, Catch::Contains("No space left"));
  CHECK_FALSE(fs::exists(d.ledger() + ".next"));
  CHECK(lastgood::watchdog::sealed_segments(d.ledger()).empty());
  CHECK_FALSE(l.rotation_due());  // not at every append: after another tenth of a segment
  l.set_io({});
  l.append("decision", "a", {{"kind", "hold"}}, 3000);
  CHECK(l.rotation_due());
  REQUIRE(l.rotate(kState, 3001));
  CHECK(verify_ledger(d.ledger()).ok);
  CHECK(verify_ledger(d.ledger()).entries == 12);
}

TEST_CASE("segments: a snapshot too large to be read back is refused, and the ledger goes on where it was", "[ledger][segments]") {
  Dir d;
  Ledger l(d.path.string());
  l.set_segment_entries(10);
  for (int i = 0; i < 10; ++i) l.append("decision", "a", {{"kind", "hold"}}, 1000 + i);
  json huge = kState;
  huge["services"]["a"] = std::string(33u << 20, 'x');  // over the 32 MiB a snapshot may take
  auto r = l.rotate(huge, 2000);
  CHECK_FALSE(r);
  CHECK_THAT(r.error, Catch::Contains("over the 32 MiB"));
  CHECK_FALSE(fs::exists(d.ledger() + ".next"));
  CHECK(lastgood::watchdog::sealed_segments(d.ledger()).empty());
  CHECK(l.append("decision", "a", {{"kind", "hold"}}, 3000).seq == 11);
  CHECK(verify_ledger(d.ledger()).ok);
}

TEST_CASE("segments: a keyed ledger stays keyed across segments, and its key is needed for every one", "[ledger][segments]") {
  Dir d;
  const std::string key = "0123456789abcdef0123456789abcdef", other = "fedcba9876543210fedcba9876543210";
  two_rotations(d, &key);
  auto rep = verify_ledger(d.ledger(), &key);
  CHECK(rep.ok);
  CHECK(rep.keyed_from == 1);
  CHECK_FALSE(verify_ledger(d.ledger()).ok);
  CHECK_FALSE(verify_ledger(d.ledger(), &other).ok);
  // The active segment alone (the sealed ones archived) still says it is keyed, and by which key.
  fs::remove(sealed(d, 1, 10));
  fs::remove(sealed(d, 11, 16));
  rep = verify_ledger(d.ledger(), &key);
  CHECK(rep.ok);
  CHECK(rep.keyed_from == 1);
  CHECK_FALSE(verify_ledger(d.ledger()).ok);
  Ledger l(d.path.string(), key);
  CHECK(l.append("decision", "a", {{"kind", "hold"}}, 7000).seq == 21);
  CHECK(verify_ledger(d.ledger(), &key).ok);
  CHECK_THROWS(Ledger(d.path.string(), other));
}
