// The request router: any bytes a client on the network sends, parsed as the server parses them
// (method, target, headers, body; Beast's parser with the server's limits) and answered by the
// API of a running lastgood (Host check, authentication and its rate limits, approvals, clears,
// the Alertmanager intake, the page, /metrics). The first byte picks the peer's address (one of
// them a trusted proxy), so X-Forwarded-For is read both ways.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <spdlog/spdlog.h>

#include "config/config.hpp"
#include "watchdog/api/server.hpp"
#include "watchdog/watchdog.hpp"
#include "watchdog/kinds.hpp"

namespace fs = std::filesystem;
using namespace lastgood;

namespace {

struct World {
  const fs::path state = (fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path()) /
                         ("lastgood-fuzz-router-" + std::to_string(::getpid()));
  boost::asio::io_context ioc;
  std::unique_ptr<watchdog::Watchdog> dog;
  ~World() {  // libFuzzer ends with exit(): the state dir does not outlive the run
    dog.reset();
    std::error_code ec;
    fs::remove_all(state, ec);
  }
  World() {
    spdlog::set_level(spdlog::level::off);
    fs::remove_all(state);
    ::setenv("LG_FUZZ_ALICE", "alice-token", 1);
    ::setenv("LG_FUZZ_BOB", "bob-token", 1);
    ::setenv("LG_FUZZ_AM", "am-token", 1);
    const std::string text = R"({
      "listen": "127.0.0.1:0",
      "state_dir": ")" + state.string() + R"(",
      "api": {"allowed_hosts": ["lastgood.example"], "trusted_proxies": ["127.0.0.2"]},
      "approvers": [{"name": "alice", "roles": ["oncall"], "token_env": "LG_FUZZ_ALICE"},
                    {"name": "bob", "roles": ["lead"], "token_env": "LG_FUZZ_BOB"}],
      "authority": {"P0": {"roles": ["oncall", "lead"], "quorum": 2}, "P1": {"roles": ["oncall"], "quorum": 1}},
      "alertmanager": {"token_env": "LG_FUZZ_AM"},
      "services": [{"name": "www", "probes": [{"name": "p", "kind": "tcp", "address": "127.0.0.1:1", "interval": "1h"}],
                    "triggers": [{"name": "down", "severity": "P1", "rule": {"kind": "consecutive_failures", "count": 1}}]}]
    })";
    auto loaded = config::load_text(text, "fuzz_router.json", lastgood::kinds());
    if (!loaded.config) std::abort();
    dog = std::make_unique<watchdog::Watchdog>(ioc, loaded.config);
    dog->start();  // binds 127.0.0.1:0; the loop is never run, so nothing is probed or sent
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World world;
  if (size < 1) return 0;
  static const char* const peers[] = {"127.0.0.1:40000", "127.0.0.2:40001", "10.0.0.7:40002", "[::1]:40003"};
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto req = watchdog::parse_http_request(bytes, peers[data[0] % 4]);
  if (!req) return 0;
  auto res = world.dog->handle(*req);
  if (res.status < 100 || res.status > 599) std::abort();
  if (res.stream) {
    std::string piece;
    for (int i = 0; i < 64 && res.stream(piece); ++i) piece.clear();
  }
  return 0;
}
