// firebase_hosting against a loopback stand-in of the Hosting REST API and the OAuth token
// endpoint: the JWT's RS256 signature is verified with the public half of a key the test makes;
// releases come paginated and unordered; a non-FINALIZED version is refused; a bad token is 401.
#include <catch2/catch.hpp>

#include <optional>

#include <algorithm>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "actions/action.hpp"
#include "actions/firebase_release.hpp"
#include "config/config.hpp"
#include "fixtures.hpp"
#include "watchdog/api/server.hpp"
#include "watchdog/kinds.hpp"

using namespace testing;
using nlohmann::json;
namespace asio = boost::asio;
using lastgood::watchdog::HttpReq;
using lastgood::watchdog::HttpRes;

namespace {

std::string b64url_decode(std::string s) {
  for (char& c : s) c = c == '-' ? '+' : c == '_' ? '/' : c;
  while (s.size() % 4) s += '=';
  std::string out(s.size(), '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(s.data()), static_cast<int>(s.size()));
  if (n < 0) return "";
  size_t pad = 0;
  while (pad < 2 && s.size() > pad && s[s.size() - 1 - pad] == '=') ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

bool verify_rs256(const std::string& jwt, const std::string& public_pem, json& claims) {
  auto d1 = jwt.find('.'), d2 = jwt.rfind('.');
  if (d1 == std::string::npos || d1 == d2) return false;
  const std::string input = jwt.substr(0, d2), sig = b64url_decode(jwt.substr(d2 + 1));
  auto header = json::parse(b64url_decode(jwt.substr(0, d1)), nullptr, false);
  if (header.is_discarded() || header.value("alg", "") != "RS256") return false;
  BIO* bio = BIO_new_mem_buf(public_pem.data(), static_cast<int>(public_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (!key) return false;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
            EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                             reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(key);
  if (ok) claims = json::parse(b64url_decode(jwt.substr(d1 + 1, d2 - d1 - 1)), nullptr, false);
  return ok;
}

struct FakeFirebase {
  std::mutex mu;
  std::string public_pem, client_email = "lastgood@test-project.iam.gserviceaccount.com";
  const std::string access_token = "ya29.test-access-token";
  json releases = json::array();  // in no particular order
  json versions = json::object();  // name -> status, of versions not (yet) released on my-site
  std::vector<std::string> clones;  // the sourceVersion of each clone
  int op_reads = 0;
  int token_requests = 0;
  std::vector<std::string> messages;
  unsigned short port = 0;

  FakeFirebase() {
    auto add = [&](const std::string& v, const std::string& status, const std::string& t) {
      releases.push_back({{"name", "sites/my-site/channels/live/releases/r-" + v},
                          {"version", {{"name", "sites/my-site/versions/" + v}, {"status", status}}},
                          {"type", "DEPLOY"},
                          {"releaseTime", t}});
    };
    add("v3", "FINALIZED", "2026-11-20T10:00:00.000Z");
    add("v1", "FINALIZED", "2026-11-01T10:00:00Z");
    add("v4", "FINALIZED", "2026-11-25T10:00:00.500Z");  // the newest: live
    add("v2", "ABANDONED", "2026-11-10T10:00:00Z");
    add("v0", "DELETED", "2026-10-01T10:00:00Z");
    http.emplace([this](const HttpReq& r) { return handle(r); });
    port = http->port();
  }
  std::string base() const { return "http://127.0.0.1:" + std::to_string(port) + "/"; }

  HttpRes handle(const HttpReq& r) {
    std::lock_guard lk(mu);
    const std::string path = r.target.substr(0, r.target.find('?'));
    const std::string query = r.target.find('?') == std::string::npos ? "" : r.target.substr(r.target.find('?') + 1);
    auto param = [&](const std::string& name) -> std::string {
      auto at = query.find(name + "=");
      if (at == std::string::npos) return "";
      auto end = query.find('&', at);
      return query.substr(at + name.size() + 1, end == std::string::npos ? std::string::npos : end - at - name.size() - 1);
    };
    if (path == "/token" && r.method == "POST") {
      ++token_requests;
      auto at = r.body.find("assertion=");
      if (r.body.find("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer") == std::string::npos || at == std::string::npos)
        return {400, "application/json", R"({"error":"unsupported_grant_type"})"};
      json claims;
      if (!verify_rs256(r.body.substr(at + 10), public_pem, claims)) return {400, "application/json", R"({"error":"invalid_grant","error_description":"bad signature"})"};
      const auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
      if (claims.value("iss", "") != client_email || claims.value("aud", "") != base() + "token" ||
          claims.value("scope", "").find("firebase.hosting") == std::string::npos || claims.value("exp", 0LL) < now ||
          claims.value("exp", 0LL) > claims.value("iat", 0LL) + 3600)
        return {400, "application/json", R"({"error":"invalid_grant","error_description":"bad claims"})"};
      return {200, "application/json", json{{"access_token", access_token}, {"expires_in", 3599}, {"token_type", "Bearer"}}.dump()};
    }
    if (r.authorization != "Bearer " + access_token) return {401, "application/json", R"({"error":{"code":401,"status":"UNAUTHENTICATED"}})"};
    if (path == "/v1beta1/sites/my-site/channels/live/releases" && r.method == "GET") {
      const size_t page_size = 2;  // small pages: the client must follow nextPageToken
      const size_t start = param("pageToken").empty() ? 0 : std::stoul(param("pageToken"));
      json out{{"releases", json::array()}};
      for (size_t i = start; i < std::min(start + page_size, releases.size()); ++i) out["releases"].push_back(releases[i]);
      if (start + page_size < releases.size()) out["nextPageToken"] = std::to_string(start + page_size);
      return {200, "application/json", out.dump()};
    }
    // Versions of this site never released (a person names one), and of the staging site.
    if (r.method == "GET" && path.rfind("/v1beta1/sites/", 0) == 0 && path.find("/versions/") != std::string::npos) {
      const std::string name = path.substr(9);  // sites/S/versions/V
      if (versions.contains(name)) return {200, "application/json", json{{"name", name}, {"status", versions[name]}}.dump()};
      for (const auto& rel : releases)
        if (rel["version"]["name"] == name) return {200, "application/json", rel["version"].dump()};
      return {404, "application/json", R"({"error":{"code":404,"status":"NOT_FOUND"}})"};
    }
    if (path == "/v1beta1/sites/staging/channels/live/releases" && r.method == "GET") {
      json out{{"releases", json::array()}};
      for (const auto& [name, st] : versions.items())
        if (name.rfind("sites/staging/", 0) == 0)
          out["releases"].push_back({{"name", "sites/staging/channels/live/releases/r"}, {"version", {{"name", name}, {"status", st}}},
                                     {"type", "DEPLOY"}, {"releaseTime", "2026-11-24T00:00:00Z"}});
      return {200, "application/json", out.dump()};
    }
    // sites.versions.clone: a long-running operation, done at its second read.
    if (path == "/v1beta1/sites/my-site/versions:clone" && r.method == "POST") {
      auto body = json::parse(r.body, nullptr, false);
      const std::string src = body.value("sourceVersion", "");
      if (!versions.contains(src) || versions[src] != "FINALIZED" || body.value("finalize", false) != true)
        return {400, "application/json", R"({"error":{"code":400,"message":"bad clone"}})"};
      clones.push_back(src);
      return {200, "application/json", json{{"name", "operations/clone-" + std::to_string(clones.size())}, {"done", false}}.dump()};
    }
    if (path.rfind("/v1beta1/operations/clone-", 0) == 0 && r.method == "GET") {
      const std::string made = "sites/my-site/versions/c" + path.substr(path.rfind('-') + 1);
      if (++op_reads % 2 == 1) return {200, "application/json", json{{"name", path.substr(9)}, {"done", false}}.dump()};
      versions[made] = "FINALIZED";
      return {200, "application/json", json{{"name", path.substr(9)}, {"done", true}, {"response", {{"name", made}, {"status", "FINALIZED"}}}}.dump()};
    }
    if (path == "/v1beta1/sites/my-site/channels/live/releases" && r.method == "POST") {
      const std::string vname = param("versionName");
      json version;
      for (const auto& rel : releases)
        if (rel["version"]["name"] == vname) version = rel["version"];
      if (version.is_null() && versions.contains(vname)) version = {{"name", vname}, {"status", versions[vname]}};
      if (version.is_null() || version["status"] != "FINALIZED") return {400, "application/json", R"({"error":{"code":400}})"};
      auto body = json::parse(r.body, nullptr, false);
      messages.push_back(body.value("message", ""));
      json rel{{"name", "sites/my-site/channels/live/releases/r-rb" + std::to_string(messages.size())},
               {"version", version},
               {"type", "ROLLBACK"},
               {"releaseTime", "2026-11-26T00:00:00Z"},
               {"message", body.value("message", "")}};
      releases.push_back(rel);
      return {200, "application/json", rel.dump()};
    }
    return {404, "application/json", "{}"};
  }
  std::optional<HttpTestServer> http;  // last: stopped before the members its handler uses
};

std::unique_ptr<lastgood::actions::Action> firebase_action(asio::io_context& ioc, const json& dep) {
  json doc{{"services", {{{"name", "site"}, {"probes", {{{"name", "p"}, {"kind", "tcp"}, {"address", "127.0.0.1:1"}}}}, {"deployment", dep}}}}};
  auto res = lastgood::config::load_text(doc.dump(), "t", lastgood::kinds(), {.resolve_secrets = true});
  for (const auto& p : res.problems) UNSCOPED_INFO(p.to_string());
  REQUIRE(res.config);
  static std::vector<std::shared_ptr<const lastgood::config::Config>> keep;  // the action reads its deployment's secrets
  keep.push_back(res.config);
  return lastgood::actions::make_action(ioc.get_executor(), "site", *res.config->services[0].deployment);
}

}  // namespace

TEST_CASE("firebase_hosting with a service-account key: observe the newest release across pages, roll back to a FINALIZED version",
          "[firebase]") {
  TempDir dir;
  FakeFirebase fb;
  std::string out;
  REQUIRE(run_command({"openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", (dir.path / "sa.key").string()}, &out) == 0);
  REQUIRE(run_command({"openssl", "pkey", "-in", (dir.path / "sa.key").string(), "-pubout", "-out", (dir.path / "sa.pub").string()}, &out) == 0);
  fb.public_pem = read_file(dir.path / "sa.pub");
  const std::string private_pem = read_file(dir.path / "sa.key");
  write_file(dir.path / "sa.json", json{{"type", "service_account"}, {"client_email", fb.client_email}, {"private_key", private_pem},
                                        {"token_uri", fb.base() + "token"}}.dump());
  asio::io_context ioc;
  auto a = firebase_action(ioc, {{"kind", "firebase_hosting"}, {"site", "my-site"}, {"credentials_file", (dir.path / "sa.json").string()},
                                 {"api_base", fb.base() + "v1beta1/"}});
  auto o = run_sync(ioc, a->observe());
  INFO(o.error);
  REQUIRE(o.live);
  CHECK(o.live->id == "v4");
  REQUIRE(o.live->deployed_at);
  CHECK(o.history.size() == 5);
  CHECK(o.history.front().id == "v0");

  auto done = run_sync(ioc, a->execute(a->plan("v4", "v3", {"site", "down", "3 consecutive failures"})));
  INFO(done.error);
  CHECK(done.ok);
  {
    std::lock_guard lk(fb.mu);
    REQUIRE(fb.messages.size() == 1);
    CHECK_THAT(fb.messages[0], Catch::Contains("lastgood rollback v4 -> v3 (trigger down): 3 consecutive failures"));
    CHECK(fb.token_requests == 1);  // the token is cached across calls
  }
  auto live = run_sync(ioc, a->observe());
  REQUIRE(live.live);
  CHECK(live.live->id == "v3");

  auto refused = run_sync(ioc, a->execute(a->plan("v3", "v2", {})));
  CHECK_FALSE(refused.ok);
  CHECK_THAT(refused.error, Catch::Contains("version v2 is ABANDONED, not FINALIZED"));
  CHECK_THAT(refused.error, Catch::Contains("nothing was changed"));
  // With earlier verified-good versions known, the first FINALIZED one is used instead, and said.
  lastgood::actions::Context ctx{"site", "down", "breach", {"v0", "v1"}};
  auto fell_back = run_sync(ioc, a->execute(a->plan("v3", "v2", ctx)));
  INFO(fell_back.error);
  CHECK(fell_back.ok);
  CHECK_THAT(fell_back.output, Catch::Contains("-> v1 (version v2 is ABANDONED, not FINALIZED; rolled back to the previous good FINALIZED version v1 instead)"));
  {
    std::lock_guard lk(fb.mu);
    CHECK_THAT(fb.messages.back(), Catch::Contains("v3 -> v1"));
  }
  // A person released v4 again since the decision v3 -> v2: the live channel is read just before
  // the switch and nothing is created.
  const size_t created = [&] {
    std::lock_guard lk(fb.mu);
    return fb.messages.size();
  }();
  auto stale = run_sync(ioc, a->execute(a->plan("v3", "v0", {})));
  CHECK_FALSE(stale.ok);
  REQUIRE(stale.live_changed);
  CHECK(*stale.live_changed == "v1");
  {
    std::lock_guard lk(fb.mu);
    CHECK(fb.messages.size() == created);
  }
  for (const auto& text : {done.output, done.error, refused.error, o.error}) {
    CHECK(text.find("PRIVATE KEY") == std::string::npos);
    CHECK(text.find(fb.access_token) == std::string::npos);
  }
}

TEST_CASE("firebase_hosting: a refused token is a clear error; a key that does not sign is refused", "[firebase]") {
  FakeFirebase fb;
  ::setenv("LASTGOOD_TEST_FB_TOKEN", "ya29.wrong", 1);
  asio::io_context ioc;
  auto a = firebase_action(ioc, {{"kind", "firebase_hosting"}, {"site", "my-site"}, {"token_env", "LASTGOOD_TEST_FB_TOKEN"}, {"api_base", fb.base() + "v1beta1/"}});
  auto o = run_sync(ioc, a->observe());
  CHECK_FALSE(o.live);
  CHECK_THAT(o.error, Catch::Contains("HTTP 401 (credentials refused)"));
  CHECK_THAT(o.error, !Catch::Contains("ya29.wrong"));

  TempDir dir;
  write_file(dir.path / "sa.json", json{{"client_email", "x@y"}, {"private_key", "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"},
                                        {"token_uri", fb.base() + "token"}}.dump());
  auto b = firebase_action(ioc, {{"kind", "firebase_hosting"}, {"site", "my-site"}, {"credentials_file", (dir.path / "sa.json").string()},
                                 {"api_base", fb.base() + "v1beta1/"}});
  auto e = run_sync(ioc, b->observe());
  CHECK_THAT(e.error, Catch::Contains("the private key could not sign"));
  CHECK_THAT(e.error, !Catch::Contains("nope"));
}

TEST_CASE("firebase_hosting: a version a person names that was never released here, and a version cloned from another site",
          "[firebase]") {
  FakeFirebase fb;
  {
    std::lock_guard lk(fb.mu);
    fb.versions["sites/my-site/versions/v5"] = "FINALIZED";  // uploaded and finalized, never released
    fb.versions["sites/my-site/versions/v6"] = "CREATED";
    fb.versions["sites/staging/versions/s7"] = "FINALIZED";
  }
  ::setenv("LASTGOOD_TEST_FB_TOKEN", fb.access_token.c_str(), 1);
  asio::io_context ioc;
  json dep{{"kind", "firebase_hosting"}, {"site", "my-site"}, {"token_env", "LASTGOOD_TEST_FB_TOKEN"}, {"api_base", fb.base() + "v1beta1/"}};

  SECTION("a version of this site never released: its own status is read, and it is released") {
    auto a = firebase_action(ioc, dep);
    auto out = run_sync(ioc, a->execute(a->plan("v4", "v5", {"site", "manual", "a person named v5"})));
    INFO(out.error);
    CHECK(out.ok);
    CHECK_FALSE(out.switched_to);
    auto live = run_sync(ioc, a->observe());
    REQUIRE(live.live);
    CHECK(live.live->id == "v5");
    auto created = run_sync(ioc, a->execute(a->plan("v5", "v6", {})));
    CHECK_FALSE(created.ok);
    CHECK_THAT(created.error, Catch::Contains("version v6 is CREATED, not FINALIZED"));
  }
  SECTION("source_site: a version of the other site is cloned into this one (followed to done), then released; said and verified under its new id") {
    dep["source_site"] = "staging";
    auto a = firebase_action(ioc, dep);
    auto seen = run_sync(ioc, a->observe());
    REQUIRE(seen.live);
    CHECK(std::any_of(seen.history.begin(), seen.history.end(), [](const auto& h) { return h.id == "s7"; }));  // offered for a person's `to`
    auto plan = a->plan("v4", "s7", {"site", "manual", "staging has the good build"});
    CHECK_THAT(plan.steps[0], Catch::Contains("clone sites/staging/versions/s7 into my-site"));
    auto out = run_sync(ioc, a->execute(plan));
    INFO(out.error);
    CHECK(out.ok);
    REQUIRE(out.switched_to);
    CHECK(*out.switched_to == "c1");
    CHECK_THAT(out.output, Catch::Contains("cloned sites/staging/versions/s7 into sites/my-site/versions/c1"));
    {
      std::lock_guard lk(fb.mu);
      CHECK(fb.clones == std::vector<std::string>{"sites/staging/versions/s7"});
      CHECK(fb.op_reads == 2);  // not done, then done
    }
    auto live = run_sync(ioc, a->observe());
    REQUIRE(live.live);
    CHECK(live.live->id == "c1");
    // A version neither site has: nothing is cloned or released.
    auto none = run_sync(ioc, a->execute(a->plan("c1", "zz9", {})));
    CHECK_FALSE(none.ok);
    CHECK_THAT(none.error, Catch::Contains("not among the live channel's releases"));
    std::lock_guard lk(fb.mu);
    CHECK(fb.clones.size() == 1);
  }
}
