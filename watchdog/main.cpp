// lastgood command line: run, validate, demo, --version, --help.
// Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.
#include <algorithm>
#include <malloc.h>
#include <csignal>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "config/config.hpp"
#include "config/secret.hpp"
#include "net/supervise.hpp"
#include "lastgood/version.hpp"
#include "watchdog/ctl.hpp"
#include "watchdog/demo.hpp"
#include "watchdog/state/ledger.hpp"
#include "watchdog/logging.hpp"
#include "watchdog/validate.hpp"
#include "watchdog/watchdog.hpp"
#include "watchdog/kinds.hpp"

namespace {

constexpr const char* kUsage = R"(lastgood: watches what you shipped and puts back the last good release.

usage:
  lastgood run -c FILE [--dry-run]   watch the services of FILE (serves /metrics, /healthz, /readyz, /api/v1)
  lastgood validate -c FILE          check FILE; prints one line per problem (file: JSON pointer: expected)
  lastgood demo [--for DURATION] [--keep]
                                     self-contained demo on loopback (no config needed)
  lastgood ledger verify FILE [--head SEQ:HASH] [--key-file K]
                                     walk the hash chain; names the first broken line; with --head,
                                     also check that the head recorded earlier (elsewhere) is still in it;
                                     with --key-file, check the HMACs of a keyed ledger (ledger.hmac_key_file)
  lastgood ledger head FILE [--key-file K]
                                     print the last entry's SEQ:HASH, to keep outside this machine
  lastgood ctl COMMAND               talk to a running lastgood: status, proposals, approve, reject,
                                     rollback, bad, releases, silence, clear, reload (lastgood ctl --help)
  lastgood --version | --help | COMMAND --help

options:
  -c, --config FILE       config file (JSON; see docs/configuration.md); --name=value works too
  --dry-run               every rollback becomes a logged plan; nothing is changed
  --log-format text|json  human lines (default) or one JSON object a line
  --log-level LEVEL       trace, debug, info (default), warn, error
  --listen ADDR           demo only: address of lastgood's own server (default 127.0.0.1:9464)
  --for DURATION          demo only: stop after DURATION (e.g. 30s)
  --keep                  demo only: keep its folder (state, ledger, incidents) when it ends

exit codes: 0 ok, 1 runtime failure, 2 usage or config error
)";

// `lastgood COMMAND --help`.
const char* command_help(const std::string& command) {
  if (command == "run")
    return R"(usage: lastgood run -c FILE [--dry-run] [--log-format text|json] [--log-level LEVEL]

Watches the services of FILE: probes them, decides on breaches, rolls back as the config allows,
and serves /metrics, /healthz, /readyz, the API (/api/v1) and the approval page on the config's
"listen" address. SIGHUP (or POST /-/reload) reads FILE again; SIGINT/SIGTERM stop, letting a
rollback under way finish (30 s).

  -c, --config FILE       the config (JSON; docs/configuration.md)
  --dry-run               every rollback becomes a logged plan; nothing is changed
  --log-format text|json  human lines (default) or one JSON object a line
  --log-level LEVEL       trace, debug, info (default), warn, error

exit codes: 0 stopped, 1 runtime failure, 2 usage or config error
)";
  if (command == "validate")
    return R"(usage: lastgood validate -c FILE

Checks FILE as `run` would, without reading secrets or touching the network: one line per
problem (file: JSON pointer: what was expected), warnings after an ok.

exit codes: 0 valid, 2 invalid or usage error
)";
  if (command == "demo")
    return R"(usage: lastgood demo [--listen ADDR] [--for DURATION] [--keep]

A self-contained scenario on loopback: a good release, a bad one deployed, the breach detected,
rolled back and verified, each step printed with its evidence.

  --listen ADDR    lastgood's own server (default 127.0.0.1:9464; a free port when taken)
  --for DURATION   stop after DURATION (e.g. 30s); default: until Ctrl-C
  --keep           keep the demo's folder (state, ledger, incidents) when it ends

exit codes: 0 ok, 1 runtime failure, 2 usage error
)";
  if (command == "ledger")
    return R"(usage: lastgood ledger verify FILE [--head SEQ:HASH] [--key-file K]
       lastgood ledger head FILE [--key-file K]

verify walks the hash chain and names the first broken line; with --head, also checks that a head
recorded earlier (elsewhere) is still in it; with --key-file, checks the HMACs of a keyed ledger
(ledger.hmac_key_file). head prints the last entry's SEQ:HASH, to keep outside this machine.

exit codes: 0 intact, 1 not intact, 2 usage error
)";
  return nullptr;
}

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "lastgood: %s\n(see lastgood --help)\n", msg.c_str());
  return 2;
}

struct Args {
  std::string command;
  std::vector<std::string> rest;
  std::string config;
  bool dry_run = false;
  std::string log_format = "text";
  std::string log_level = "info";
  std::string listen = "127.0.0.1:9464";
  std::optional<std::string> run_for;
  std::optional<std::string> head;  // ledger verify --head SEQ:HASH
  std::optional<std::string> key_file;  // ledger verify/head --key-file K
  bool keep = false;                    // demo --keep
};

void warn_open_files(const lastgood::config::Config& cfg, std::uint64_t limit) {
  size_t n = 0;
  for (const auto& s : cfg.services) n += s.probes.size();
  // Each probe may hold one kept-alive connection; leave room for the server and the rest.
  if (limit > 0 && n + 64 > limit * 8 / 10)
    spdlog::warn("{} probes may hold up to {} connections, near the open-files limit of {}: raise it (LimitNOFILE=, ulimit -n)", n, n,
                 limit);
}

int cmd_validate(const Args& a) {
  std::string out;
  int rc = lastgood::watchdog::validate_file(a.config, out);
  std::fputs(out.c_str(), stdout);
  if (rc == 0) {
    if (auto res = lastgood::config::load_file(a.config, lastgood::kinds(), {.resolve_secrets = false}); res.config)
      warn_open_files(*res.config, lastgood::watchdog::raise_open_files_limit());
  }
  return rc;
}

int cmd_run(const Args& a) {
  ::signal(SIGHUP, SIG_IGN);  // until the loop's handler is installed (a SIGHUP during start-up)
  auto res = lastgood::config::load_file(a.config, lastgood::kinds());
  if (!res.config) {
    for (const auto& p : res.problems) spdlog::error("config: {}", p.to_string());
    return 2;
  }
  const auto limit = lastgood::watchdog::raise_open_files_limit();
  warn_open_files(*res.config, limit);
  boost::asio::io_context ioc(1);
  try {
    lastgood::watchdog::WatchdogOptions wopts;
    wopts.dry_run = a.dry_run;
    lastgood::watchdog::Watchdog wd(ioc, res.config, wopts);
    wd.start();
    boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
    // SIGHUP reloads the config (as POST /-/reload); its default action would end the process.
    boost::asio::signal_set hup(ioc, SIGHUP);
    // Shutting down: probes, observing, notices and the API are cancelled at once (their
    // coroutines unwind on the loop); a rollback under way is left to finish and be recorded, for
    // up to kRollbackGrace, so that a switch is not abandoned half-done. A second signal, or the
    // end of the grace, stops at once: an unfinished rollback is reconciled at the next start.
    constexpr auto kRollbackGrace = std::chrono::seconds(30);
    boost::asio::steady_timer drain(ioc);
    std::chrono::steady_clock::time_point give_up{};
    std::function<void(boost::system::error_code)> check_drained = [&](boost::system::error_code ec) {
      if (ec) return;
      const auto left = wd.busy();
      if (left == 0 || std::chrono::steady_clock::now() >= give_up) {
        if (left) spdlog::warn("{} rollback(s) still under way after {}s: stopping; the next start reconciles them", left, kRollbackGrace.count());
        ioc.stop();
        return;
      }
      drain.expires_after(std::chrono::milliseconds(20));
      drain.async_wait(check_drained);
    };
    signals.async_wait([&](boost::system::error_code ec, int sig) {
      if (ec) return;
      spdlog::info("received {}, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
      wd.stop();
      hup.cancel();
      if (const auto n = wd.pipeline().rollbacks_running(); n > 0)
        spdlog::warn("{} rollback(s) under way: waiting up to {}s for them to finish (send the signal again to stop at once)", n,
                     kRollbackGrace.count());
      give_up = std::chrono::steady_clock::now() + kRollbackGrace;
      drain.expires_after(std::chrono::milliseconds(20));  // at least one turn for the cancelled to unwind
      drain.async_wait(check_drained);
      signals.async_wait([&](boost::system::error_code ec2, int) {
        if (ec2) return;
        spdlog::warn("second signal: stopping at once");
        ioc.stop();
      });
    });
    std::function<void(boost::system::error_code, int)> on_hup = [&](boost::system::error_code ec, int) {
      if (ec) return;
      spdlog::info("received SIGHUP: reloading {}", a.config);
      lastgood::net::guarded("loop", [&] { wd.reload_detached("SIGHUP"); });
      hup.async_wait(on_hup);
    };
    hup.async_wait(on_hup);
    // The last line of supervision: an exception that escaped a handler is counted and logged, and
    // the loop runs on (io_context::run may be called again after it threw).
    for (;;) {
      try {
        ioc.run();
        break;
      } catch (const std::exception& ex) {
        lastgood::net::note_internal_error("loop", ex.what());
      } catch (...) {
        lastgood::net::note_internal_error("loop", "unknown exception");
      }
    }
  } catch (const std::exception& ex) {
    spdlog::error("{}", ex.what());
    return 1;
  }
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Allocations of 1 MiB and more (the /metrics body: 16 MB at 10 000 probes) are mapped and
  // unmapped on free. glibc otherwise raises this threshold after the first such free, and the
  // next scrape's body stays in the heap as resident memory after it is sent.
  ::mallopt(M_MMAP_THRESHOLD, 1 << 20);
  std::vector<std::string> given(argv + 1, argv + argc);
  // `lastgood ctl ...`: a client of a running instance, with options of its own.
  if (!given.empty() && given[0] == "ctl") return lastgood::watchdog::run_ctl(std::vector<std::string>(given.begin() + 1, given.end()));
  // --name=value is --name value (as GNU tools take it).
  std::vector<std::string> v;
  for (const auto& g : given) {
    const auto eq = g.find('=');
    if (g.rfind("--", 0) == 0 && eq != std::string::npos) {
      v.push_back(g.substr(0, eq));
      v.push_back(g.substr(eq + 1));
    } else {
      v.push_back(g);
    }
  }
  Args a;
  bool help = false;
  std::vector<std::pair<std::string, std::vector<std::string>>> used;  // option -> the commands it belongs to
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string& s = v[i];
    auto value = [&](const char* name) -> std::optional<std::string> {
      if (i + 1 >= v.size()) return std::nullopt;
      (void)name;
      return v[++i];
    };
    if (s == "--help" || s == "-h") {
      help = true;
    } else if (s == "--version") {
      std::printf("lastgood %s\n", lastgood::kVersion);
      return 0;
    } else if (s == "-c" || s == "--config") {
      auto x = value("--config");
      if (!x) return usage_error(s + " needs a file");
      a.config = *x;
      used.push_back({"--config", {"run", "validate"}});
    } else if (s == "--dry-run") {
      a.dry_run = true;
      used.push_back({"--dry-run", {"run"}});
    } else if (s == "--log-format") {
      auto x = value("--log-format");
      if (!x) return usage_error("--log-format needs text or json");
      a.log_format = *x;
    } else if (s == "--log-level") {
      auto x = value("--log-level");
      if (!x) return usage_error("--log-level needs a level");
      a.log_level = *x;
    } else if (s == "--listen") {
      auto x = value("--listen");
      if (!x) return usage_error("--listen needs ip:port");
      a.listen = *x;
      used.push_back({"--listen", {"demo"}});
    } else if (s == "--head") {
      auto x = value("--head");
      if (!x) return usage_error("--head needs SEQ:HASH (from lastgood ledger head)");
      a.head = *x;
      used.push_back({"--head", {"ledger"}});
    } else if (s == "--key-file") {
      auto x = value("--key-file");
      if (!x) return usage_error("--key-file needs the file of the ledger's HMAC key (ledger.hmac_key_file)");
      a.key_file = *x;
      used.push_back({"--key-file", {"ledger"}});
    } else if (s == "--for") {
      auto x = value("--for");
      if (!x) return usage_error("--for needs a duration");
      a.run_for = *x;
      used.push_back({"--for", {"demo"}});
    } else if (s == "--keep") {
      a.keep = true;
      used.push_back({"--keep", {"demo"}});
    } else if (!s.empty() && s[0] == '-') {
      return usage_error("unknown option " + s);
    } else if (a.command.empty()) {
      a.command = s;
    } else if (a.command == "ledger") {
      a.rest.push_back(s);
    } else {
      return usage_error("unexpected argument " + s);
    }
  }
  if (help) {
    const char* text = command_help(a.command);
    std::fputs(text ? text : kUsage, stdout);
    return 0;
  }
  // An option given to a command it does not belong to is refused, not ignored (`run --listen`
  // would otherwise look honoured while the config's address is used).
  if (!a.command.empty())
    for (const auto& [opt, commands] : used)
      if (std::find(commands.begin(), commands.end(), a.command) == commands.end()) {
        if (opt == "--listen" && a.command == "run") return usage_error("--listen is for demo; run listens where the config's \"listen\" says");
        std::string where;
        for (const auto& c : commands) where += (where.empty() ? "" : " and ") + c;
        return usage_error(opt + " is an option of " + where + ", not of " + a.command);
      }
  if (!lastgood::watchdog::setup_logging(a.log_format, a.log_level))
    return usage_error("bad --log-format (text|json) or --log-level (trace|debug|info|warn|error)");
  if (a.command.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  if (a.command == "validate" || a.command == "run") {
    if (a.config.empty()) return usage_error(a.command + " needs -c FILE");
    return a.command == "validate" ? cmd_validate(a) : cmd_run(a);
  }
  if (a.command == "ledger") {
    if (a.rest.size() != 2 || (a.rest[0] != "verify" && a.rest[0] != "head"))
      return usage_error("usage: lastgood ledger verify FILE [--head SEQ:HASH] [--key-file K] | lastgood ledger head FILE [--key-file K]");
    std::optional<std::string> key;
    if (a.key_file) {
      auto secret = lastgood::config::Secret::from_file(*a.key_file);
      if (auto err = secret.resolve()) return usage_error("--key-file: " + *err);
      key = secret.value();
    }
    const std::string* k = key ? &*key : nullptr;
    auto rep = lastgood::watchdog::verify_ledger(a.rest[1], k);
    if (a.rest[0] == "head") {
      if (!rep.ok || rep.entries == 0) {
        std::printf("%s: %s\n", a.rest[1].c_str(), rep.ok ? "no entries" : ("not intact: " + rep.why).c_str());
        return 1;
      }
      std::printf("%llu:%s\n", static_cast<unsigned long long>(rep.head_seq), rep.head_hash.c_str());
      return 0;
    }
    if (rep.ok && a.head) {
      // The head kept elsewhere must still be in the chain, at its seq, with its hash: a ledger
      // rewritten before that point (even with a consistent chain) no longer holds it.
      const auto colon = a.head->find(':');
      std::uint64_t seq = 0;
      const std::string hash = colon == std::string::npos ? "" : a.head->substr(colon + 1);
      const auto [end, ec] = std::from_chars(a.head->data(), a.head->data() + (colon == std::string::npos ? 0 : colon), seq);
      if (colon == std::string::npos || ec != std::errc() || hash.size() != 64) return usage_error("--head needs SEQ:HASH as lastgood ledger head prints it");
      (void)end;
      const auto found = lastgood::watchdog::ledger_hash_at(a.rest[1], seq, k);
      if (!found || *found != hash) {
        std::printf("%s: the anchored head %s is not in this ledger (%s): it was rewritten, or it is not the ledger that was anchored\n",
                    a.rest[1].c_str(), a.head->c_str(), found ? ("entry " + std::to_string(seq) + " has another hash").c_str() : "no such entry");
        return 1;
      }
      std::printf("%s: ok, %llu entries, chain intact, anchored head %llu found\n", a.rest[1].c_str(), static_cast<unsigned long long>(rep.entries),
                  static_cast<unsigned long long>(seq));
      return 0;
    }
    // Segments: how many files the chain ran through, and where it began when the oldest were moved away.
    const std::string spread =
        (rep.segments ? " in " + std::to_string(rep.segments) + " sealed segment(s) and the active file" : std::string()) +
        (rep.from_seq > 1 ? " (from entry " + std::to_string(rep.from_seq) + ", a snapshot: the segments before it are not here)" : std::string());
    if (rep.ok) {
      std::printf("%s: ok, %llu entries%s, chain intact%s\n", a.rest[1].c_str(), static_cast<unsigned long long>(rep.entries), spread.c_str(),
                  rep.keyed_from == 0 ? ""
                                      : (", keyed (HMAC-SHA256, key id " + rep.key_id + ") from entry " + std::to_string(rep.keyed_from) +
                                         (rep.keyed_from > 1 ? "; the entries before it are not vouched for by the key" : ""))
                                            .c_str());
      return 0;
    }
    const std::string where = rep.bad_file.empty() ? a.rest[1] : rep.bad_file;
    if (rep.bad_line == 0) std::printf("%s: %s\n", where.c_str(), rep.why.c_str());
    else std::printf("%s: line %llu: %s (%llu entries before it are intact)\n", where.c_str(), static_cast<unsigned long long>(rep.bad_line),
                     rep.why.c_str(), static_cast<unsigned long long>(rep.entries));
    return 1;
  }
  if (a.command == "demo") {
    lastgood::watchdog::DemoOptions d;
    d.listen = a.listen;
    d.keep = a.keep;
    if (a.run_for) {
      auto dur = lastgood::config::parse_duration(*a.run_for);
      if (!dur) return usage_error("--for needs a duration like 30s, found " + *a.run_for);
      d.run_for = *dur;
    }
    try {
      return lastgood::watchdog::run_demo(d);
    } catch (const std::exception& ex) {
      spdlog::error("demo: {}", ex.what());
      return 1;
    }
  }
  return usage_error("unknown command " + a.command);
}
