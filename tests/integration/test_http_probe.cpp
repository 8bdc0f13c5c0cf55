// The http probe against a real nginx on loopback: plain and TLS, expectations, keep-alive.
#include <catch2/catch.hpp>
#include <thread>

#include <algorithm>

#include "config/config.hpp"
#include "fixtures.hpp"
#include "net/tls.hpp"
#include "probes/probe.hpp"
#include "watchdog/kinds.hpp"

using namespace testing;
namespace cfg = lastgood::config;
namespace probes = lastgood::probes;

namespace {

cfg::Probe http_probe(const std::string& url, nlohmann::json extra = nlohmann::json::object()) {
  nlohmann::json p{{"name", "p"}, {"kind", "http"}, {"url", url}, {"interval", "10s"}, {"timeout", "2s"}};
  p.update(extra);
  nlohmann::json doc{{"services", {{{"name", "s"}, {"probes", {p}}}}}};
  auto res = cfg::load_text(doc.dump(), "test", lastgood::kinds(), {.resolve_secrets = false});
  for (auto& pr : res.problems) UNSCOPED_INFO(pr.to_string());
  REQUIRE(res.config);
  return res.config->services[0].probes[0];
}

cfg::Probe tcp_probe(const std::string& address) {
  nlohmann::json doc{{"services", {{{"name", "s"}, {"probes", {{{"name", "p"}, {"kind", "tcp"}, {"address", address}, {"interval", "10s"}, {"timeout", "2s"}}}}}}}};
  auto res = cfg::load_text(doc.dump(), "test", lastgood::kinds(), {.resolve_secrets = false});
  for (auto& pr : res.problems) UNSCOPED_INFO(pr.to_string());
  REQUIRE(res.config);
  return res.config->services[0].probes[0];
}

probes::ProbeResult run_once(probes::Probe& p, boost::asio::io_context& ioc) { return run_sync(ioc, p.run()); }

probes::ProbeResult probe_once(const cfg::Probe& spec) {
  boost::asio::io_context ioc;
  auto p = probes::make_probe(ioc.get_executor(), "s", spec);
  return run_once(*p, ioc);
}

bool has_failure(const probes::ProbeResult& r, const std::string& cond, const std::string& text = "") {
  for (const auto& f : r.failures)
    if (f.condition == cond && f.reason.find(text) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("http probe against nginx: ok, status, body and JSON expectations", "[nginx]") {
  TempDir dir;
  Nginx nginx(dir.path);

  SECTION("200 with the expected body is ok, with timing phases") {
    auto r = probe_once(http_probe(nginx.url("/"), {{"expect", {{"status", "200-299"}, {"body_contains", "<title>"}}}}));
    INFO(r.reason);
    CHECK(r.outcome == probes::Outcome::ok);
    CHECK(r.http_status == 200);
    CHECK(r.timing.connect.has_value());
    CHECK(r.timing.first_byte.has_value());
    CHECK(r.timing.total.count() > 0);
  }
  SECTION("500 is a fail naming the status") {
    auto r = probe_once(http_probe(nginx.url("/status/500")));
    CHECK(r.outcome == probes::Outcome::fail);
    CHECK(r.http_status == 500);
    CHECK(has_failure(r, "status", "got 500, expected 200-299"));
  }
  SECTION("a body mismatch is a fail naming the missing text") {
    auto r = probe_once(http_probe(nginx.url("/"), {{"expect", {{"body_contains", "release v2"}}}}));
    CHECK(r.outcome == probes::Outcome::fail);
    CHECK(has_failure(r, "body_contains", "release v2"));
    auto m = probe_once(http_probe(nginx.url("/"), {{"expect", {{"body_matches", "<title>[a-z ]+</title>"}}}}));
    CHECK(m.outcome == probes::Outcome::ok);
  }
  SECTION("JSON pointer and header expectations") {
    auto ok = probe_once(http_probe(nginx.url("/health.json"),
                                    {{"expect", {{"json", {{"/status", "ok"}}}, {"header", {{"content-type", "application/json"}}}}}}));
    INFO(ok.reason);
    CHECK(ok.outcome == probes::Outcome::ok);
    auto bad = probe_once(http_probe(nginx.url("/health.json"), {{"expect", {{"json", {{"/version", "2.0.0"}}}}}}));
    CHECK(bad.outcome == probes::Outcome::fail);
    CHECK(has_failure(bad, "json", "/version is \"1.2.3\", expected \"2.0.0\""));
  }
  SECTION("redirects are followed only when configured") {
    auto no = probe_once(http_probe(nginx.url("/redirect")));
    CHECK(no.http_status == 302);
    CHECK(no.outcome == probes::Outcome::fail);
    auto yes = probe_once(http_probe(nginx.url("/redirect"), {{"follow_redirects", 2}, {"expect", {{"body_contains", "hello"}}}}));
    INFO(yes.reason);
    CHECK(yes.outcome == probes::Outcome::ok);
    CHECK(yes.http_status == 200);
  }
  SECTION("a probe's headers go only to the configured origin: a redirect to another origin does not get them") {
    auto same = probe_once(http_probe(nginx.url("/redirect"), {{"follow_redirects", 2}, {"headers", {{"X-Probe-Key", "k-same-123"}}}}));
    CHECK(same.outcome == probes::Outcome::ok);
    auto other = probe_once(http_probe(nginx.url("/elsewhere"), {{"follow_redirects", 2}, {"headers", {{"X-Probe-Key", "k-other-456"}}}}));
    INFO(other.reason);
    CHECK(other.outcome == probes::Outcome::ok);
    const std::string log = read_file(nginx.access_log);
    INFO(log);
    CHECK_THAT(log, Catch::Contains("\"GET /redirect HTTP/1.1\" key=k-same-123"));
    CHECK_THAT(log, Catch::Contains("\"GET /index.html HTTP/1.1\" key=k-same-123"));  // the same origin: kept
    CHECK_THAT(log, Catch::Contains("\"GET /elsewhere HTTP/1.1\" key=k-other-456"));
    CHECK(log.find("\"GET /index.html HTTP/1.1\" key=k-other-456") == std::string::npos);  // localhost:PORT is another origin
  }
  SECTION("a closed port is a fail, not an error") {
    auto r = probe_once(http_probe("http://127.0.0.1:" + std::to_string(free_port()) + "/"));
    CHECK(r.outcome == probes::Outcome::fail);
    CHECK(has_failure(r, "connect", "refused"));
  }
  SECTION("an unresolvable host is an error: the watcher cannot judge") {
    auto r = probe_once(http_probe("http://lastgood-no-such-host.invalid/"));
    CHECK(r.outcome == probes::Outcome::error);
    CHECK(has_failure(r, "resolve"));
  }
}

TEST_CASE("http probe reuses its keep-alive connection across runs, as nginx's access log shows", "[nginx]") {
  TempDir dir;
  Nginx nginx(dir.path);
  boost::asio::io_context ioc;
  const auto spec = http_probe(nginx.url("/"));  // a probe refers to its spec
  auto p = probes::make_probe(ioc.get_executor(), "s", spec);
  for (int i = 0; i < 4; ++i) {
    auto r = run_once(*p, ioc);
    REQUIRE(r.outcome == probes::Outcome::ok);
    CHECK(r.to_json()["details"]["reused_connection"] == (i > 0));
  }
  REQUIRE(wait_until([&] { return nginx.logged_connections().size() == 4; }, std::chrono::seconds(5)));
  auto conns = nginx.logged_connections();
  CHECK(conns[0] == conns[1]);
  CHECK(conns[1] == conns[2]);
  CHECK(conns[2] == conns[3]);
}

namespace {
struct RunSink final : probes::RunSink {
  std::optional<probes::ProbeResult> result;
  std::uint32_t tag = 0;
  int calls = 0;
  void run_done(std::uint32_t t, probes::ProbeResult&& r) override {
    ++calls;
    tag = t;
    result = std::move(r);
  }
};
}  // namespace

TEST_CASE("http probe's steady state runs without a coroutine (Probe::start) and judges as run() does", "[nginx]") {
  TempDir dir;
  Nginx nginx(dir.path);
  boost::asio::io_context ioc;
  const auto good = http_probe(nginx.url("/"));
  const auto wrong = http_probe(nginx.url("/"), {{"expect", {{"body_contains", "not in the page"}}}});
  const bool failing = GENERATE(false, true);
  auto p = probes::make_probe(ioc.get_executor(), "s", failing ? wrong : good);
  RunSink sink;
  CHECK_FALSE(p->start(sink, 7));  // no connection yet: the first run goes through run()
  auto first = run_once(*p, ioc);
  for (int i = 0; i < 3; ++i) {
    sink = RunSink{};
    REQUIRE(p->start(sink, 7));
    CHECK(sink.calls == 0);  // never from inside start()
    ioc.restart();
    while (sink.calls == 0 && ioc.run_one()) {
    }
    REQUIRE(sink.calls == 1);
    CHECK(sink.tag == 7);
    const auto& r = *sink.result;
    INFO(r.reason);
    CHECK(r.outcome == (failing ? probes::Outcome::fail : probes::Outcome::ok));
    CHECK(r.outcome == first.outcome);
    CHECK(r.reason == first.reason);
    CHECK(r.http_status == 200);
    CHECK(r.to_json()["details"]["reused_connection"] == true);
    CHECK(r.to_json()["details"]["connections_opened"] == 1);
  }
  REQUIRE(wait_until([&] { return nginx.logged_connections().size() == 4; }, std::chrono::seconds(5)));
  auto conns = nginx.logged_connections();
  CHECK(std::count(conns.begin(), conns.end(), conns[0]) == 4);  // one connection for the four
}

TEST_CASE("https probe verifies the certificate chain and the host name", "[nginx]") {
  TempDir dir;
  TestPki pki(dir.path);
  Nginx nginx(dir.path, &pki);

  SECTION("an https probe does not follow a redirect to plain http unless redirect_to_http allows it") {
    auto refused = probe_once(http_probe(nginx.tls_url("localhost", "/to-plain"), {{"ca_file", pki.ca_cert.string()}, {"follow_redirects", 2}}));
    CHECK(refused.outcome == probes::Outcome::fail);
    CHECK_THAT(refused.reason, Catch::Contains("refused to follow a redirect from https:// to http://127.0.0.1:"));
    auto allowed = probe_once(http_probe(nginx.tls_url("localhost", "/to-plain"),
                                         {{"ca_file", pki.ca_cert.string()}, {"follow_redirects", 2}, {"redirect_to_http", true}}));
    INFO(allowed.reason);
    CHECK(allowed.outcome == probes::Outcome::ok);
  }
  SECTION("ok with the CA file, and reports the certificate's remaining validity") {
    auto r = probe_once(http_probe(nginx.tls_url("localhost"), {{"ca_file", pki.ca_cert.string()}}));
    INFO(r.reason);
    CHECK(r.outcome == probes::Outcome::ok);
    CHECK(r.timing.tls.has_value());
    REQUIRE(r.http);
    REQUIRE(r.http->cert_expires_in_s);
    CHECK(r.to_json()["details"]["cert_expires_in_s"].get<long>() > 19 * 86400);
  }
  SECTION("cert_valid_for fails when the certificate expires sooner") {
    auto r = probe_once(http_probe(nginx.tls_url("localhost"), {{"ca_file", pki.ca_cert.string()}, {"expect", {{"cert_valid_for", "30d"}}}}));
    CHECK(r.outcome == probes::Outcome::fail);
    CHECK(has_failure(r, "cert_valid_for", "certificate expires in"));
  }
  SECTION("an untrusted CA is a fail naming the cause") {
    auto r = probe_once(http_probe(nginx.tls_url("localhost"), {{"ca_file", pki.other_ca_cert.string()}}));
    CHECK(r.outcome == probes::Outcome::fail);
    CHECK(has_failure(r, "tls", "certificate verify failed: unable to get local issuer certificate"));
  }
  SECTION("the system CA store does not trust the test CA either") {
    auto r = probe_once(http_probe(nginx.tls_url("localhost")));
    CHECK(r.outcome == probes::Outcome::fail);
    CHECK(has_failure(r, "tls", "certificate verify failed"));
  }
  SECTION("a host name the certificate does not cover is a fail naming the mismatch") {
    auto r = probe_once(http_probe(nginx.tls_url("127.0.0.1"), {{"ca_file", pki.ca_cert.string()}}));
    CHECK(r.outcome == probes::Outcome::fail);
    CHECK(has_failure(r, "tls", "mismatch"));
  }
  SECTION("insecure_skip_verify accepts it, explicitly") {
    auto r = probe_once(http_probe(nginx.tls_url("127.0.0.1"), {{"insecure_skip_verify", true}}));
    INFO(r.reason);
    CHECK(r.outcome == probes::Outcome::ok);
  }
}

TEST_CASE("https probes with the same CA file share one TLS context; other options, or the file changed, get their own", "[nginx]") {
  using lastgood::net::shared_tls_context;
  TempDir dir;
  TestPki pki(dir.path);
  Nginx nginx(dir.path, &pki);
  const fs::path bundle = dir.path / "bundle.pem";
  fs::copy_file(pki.other_ca_cert, bundle);  // a CA that does not sign nginx's certificate, for now

  auto a = shared_tls_context({bundle.string(), false});
  CHECK(shared_tls_context({bundle.string(), false}) == a);            // shared: one SSL_CTX and CA parse, not one per probe
  CHECK(shared_tls_context({bundle.string(), true}) != a);             // never shared with a context that skips verification
  CHECK(shared_tls_context({pki.ca_cert.string(), false}) != a);
  CHECK(shared_tls_context({std::nullopt, false}) == lastgood::net::default_tls_context());
  auto before = probe_once(http_probe(nginx.tls_url("localhost"), {{"ca_file", bundle.string()}}));
  CHECK(before.outcome == probes::Outcome::fail);

  // The bundle is replaced (then, say, a reload): a probe made now reads the new one; the
  // context made before is left to the probes that hold it.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a distinct modification time on coarse clocks
  fs::copy_file(pki.ca_cert, bundle, fs::copy_options::overwrite_existing);
  CHECK(shared_tls_context({bundle.string(), false}) != a);
  auto after = probe_once(http_probe(nginx.tls_url("localhost"), {{"ca_file", bundle.string()}}));
  INFO(after.reason);
  CHECK(after.outcome == probes::Outcome::ok);
}

TEST_CASE("https probe reconnecting resumes its TLS session, and still checks the certificate", "[nginx]") {
  TempDir dir;
  TestPki pki(dir.path);
  Nginx nginx(dir.path, &pki);
  boost::asio::io_context ioc;
  // /once closes the connection after each response: every run connects again.
  const auto spec = http_probe(nginx.tls_url("localhost", "/once"), {{"ca_file", pki.ca_cert.string()}, {"expect", {{"cert_valid_for", "7d"}}}});
  auto p = probes::make_probe(ioc.get_executor(), "s", spec);
  const auto full0 = lastgood::net::g_tls_handshakes.full.load(), resumed0 = lastgood::net::g_tls_handshakes.resumed.load();
  for (int i = 0; i < 4; ++i) {
    auto r = run_once(*p, ioc);
    INFO(r.reason);
    REQUIRE(r.outcome == probes::Outcome::ok);  // the certificate's expiry is known on a resumed session too
    CHECK(r.to_json()["details"]["reused_connection"] == false);
  }
  CHECK(lastgood::net::g_tls_handshakes.full.load() - full0 == 1);
  CHECK(lastgood::net::g_tls_handshakes.resumed.load() - resumed0 == 3);
  // Another CA's context does not resume a session its own verification never made.
  const auto other = http_probe(nginx.tls_url("localhost", "/once"), {{"ca_file", pki.other_ca_cert.string()}});
  auto q = probes::make_probe(ioc.get_executor(), "s", other);
  CHECK(run_once(*q, ioc).outcome == probes::Outcome::fail);
}

TEST_CASE("tcp probe: ok on an open port, fail on a closed one, error when the name does not resolve", "[nginx]") {
  TempDir dir;
  Nginx nginx(dir.path);
  auto open = probe_once(tcp_probe("127.0.0.1:" + std::to_string(nginx.port)));
  INFO(open.reason);
  CHECK(open.outcome == probes::Outcome::ok);
  CHECK(open.timing.connect.has_value());
  auto closed = probe_once(tcp_probe("127.0.0.1:" + std::to_string(free_port())));
  CHECK(closed.outcome == probes::Outcome::fail);
  CHECK(has_failure(closed, "connect", "refused"));
  auto nowhere = probe_once(tcp_probe("lastgood-no-such-host.invalid:80"));
  CHECK(nowhere.outcome == probes::Outcome::error);  // the watcher cannot judge
  CHECK(has_failure(nowhere, "resolve", "resolving lastgood-no-such-host.invalid: "));
}
