#include "actions/firebase_release.hpp"

#include "config/reader.hpp"
#include "net/url.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <re2/re2.h>
#include <spdlog/spdlog.h>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "net/http_once.hpp"
#include "net/time.hpp"

namespace lastgood::actions {

namespace asio = boost::asio;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using net::HttpError;
using net::HttpResponse;

std::string base64url(const std::string& raw) {
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(raw.data()),
                          static_cast<int>(raw.size()));
  out.resize(static_cast<size_t>(n));
  for (char& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
  while (!out.empty() && out.back() == '=') out.pop_back();
  return out;
}

std::string sign_jwt_rs256(const json& claims, const std::string& pem) {
  const std::string input = base64url(json{{"alg", "RS256"}, {"typ", "JWT"}}.dump()) + "." + base64url(claims.dump());
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = bio ? PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr) : nullptr;
  if (bio) BIO_free(bio);
  if (!key) return "";
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::string sig;
  size_t len = 0;
  if (EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
      EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1) {
    sig.resize(len);
    if (EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len, reinterpret_cast<const unsigned char*>(input.data()),
                       input.size()) == 1)
      sig.resize(len);
    else
      sig.clear();
  }
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(key);
  if (sig.empty()) return "";
  return input + "." + base64url(sig);
}

namespace {

constexpr const char* kScope = "https://www.googleapis.com/auth/firebase.hosting";

struct FirebaseRelease {
  std::string version_id, version_status, type;
  std::optional<std::chrono::system_clock::time_point> at;
};

class Firebase final : public Action {
 public:
  Firebase(asio::any_io_executor ex, std::string service, const config::Deployment& d) : ex_(std::move(ex)), service_(std::move(service)) {
    const auto& spec = config::spec_as<FirebaseHostingSpec>(d.spec);
    site_ = spec.site;
    source_site_ = spec.source_site;
    api_ = spec.api_base;
    static_token_ = spec.token;  // read again at each use (a file: a rotated token needs no restart)
    credentials_file_ = spec.credentials_file;
    token_uri_override_ = spec.token_uri;
    metadata_ = spec.metadata_server;
  }
  const char* kind() const override { return "firebase_hosting"; }
  // Listing, a status read, the release (30 s each); a clone from the source site adds up to 2 min.
  std::chrono::milliseconds step_timeout() const override { return std::chrono::seconds(source_site_.empty() ? 120 : 240); }

  asio::awaitable<Observation> observe() override {
    Observation o;
    std::vector<FirebaseRelease> rels;
    if (auto err = co_await list(rels); !err.empty()) {
      o.error = err;
      co_return o;
    }
    if (rels.empty()) {
      o.error = "the live channel of " + site_ + " has no releases";
      co_return o;
    }
    for (const auto& r : rels) o.history.push_back({r.version_id, r.at, false});
    o.live = ObservedRelease{rels.back().version_id, rels.back().at, false};
    if (!source_site_.empty()) {  // the versions a rollback may clone: offered too (cold start, a person's `to`)
      std::vector<FirebaseRelease> src;
      const std::string from_site = source_site_;
      if (auto err = co_await list(src, from_site); err.empty()) {
        for (const auto& r : src)
          if (r.version_status == "FINALIZED") o.history.push_back({r.version_id, r.at, false});
        std::stable_sort(o.history.begin(), o.history.end(), [](const auto& a, const auto& b) { return a.deployed_at < b.deployed_at; });
      } else {
        spdlog::warn("firebase_hosting {}: listing the source site {}: {}", service_, source_site_, err);
      }
    }
    co_return o;
  }

  Plan plan(const std::string& from, const std::string& to, const Context& ctx) const override {
    Plan p{from, to, ctx, {}};
    p.steps.push_back("check that sites/" + site_ + "/versions/" + to + " is FINALIZED" +
                      (source_site_.empty() ? std::string() : " (if it is not this site's, clone sites/" + source_site_ + "/versions/" + to + " into " + site_ + ")"));
    p.steps.push_back("POST " + api_ + "sites/" + site_ + "/channels/live/releases?versionName=sites/" + site_ + "/versions/" + to +
                      " {\"message\": \"" + message(p) + "\"}");
    return p;
  }

  asio::awaitable<Outcome> execute(const Plan& p) override {
    Outcome out;
    if (!valid_release_name(p.to)) {
      out.error = "refused: \"" + p.to + "\" is not a valid version id";
      co_return out;
    }
    std::vector<FirebaseRelease> rels;
    if (auto err = co_await list(rels); !err.empty()) {
      out.error = err;
      co_return out;
    }
    // The live channel's current release must still be plan.from (read just now, before the switch).
    if (rels.empty() || rels.back().version_id != p.from) co_return refused_not_from(p, rels.empty() ? "" : rels.back().version_id);
    auto status_of = [&](const std::string& v) {
      std::string st;
      for (const auto& r : rels)
        if (r.version_id == v) st = r.version_status;
      return st;
    };
    std::string to = p.to;
    std::string note;
    // A version of this site that was never released here (a person names it): its own status.
    std::string cloned_from;
    if (status_of(to).empty()) {
      const std::string here = site_;
      std::string st = co_await version_status(here, to);
      if (st.empty() && !source_site_.empty()) {  // not this site's: the source site's, cloned below
        const std::string there = source_site_;
        st = co_await version_status(there, to);
        if (st == "FINALIZED") cloned_from = source_site_;
      }
      if (st == "FINALIZED" && cloned_from.empty()) {
        rels.push_back({to, "FINALIZED", "", std::nullopt});
      } else if (!st.empty() && cloned_from.empty()) {
        rels.push_back({to, st, "", std::nullopt});
      }
    }
    if (!cloned_from.empty()) {
      std::string new_version, err;
      const std::string source = cloned_from;
      err = co_await clone_version(source, to, new_version);
      if (!err.empty()) {
        out.error = "cloning sites/" + cloned_from + "/versions/" + to + " into " + site_ + ": " + err + "; nothing was released";
        co_return out;
      }
      note = "cloned sites/" + cloned_from + "/versions/" + to + " into sites/" + site_ + "/versions/" + new_version;
      to = new_version;
    } else if (const std::string st = status_of(to); st != "FINALIZED") {
      note = "version " + to + " is " + (st.empty() ? "not among the live channel's releases" : st) + ", not FINALIZED";
      to.clear();
      for (const auto& f : p.context.fallbacks)  // the previous good FINALIZED version, else nothing
        if (valid_release_name(f) && status_of(f) == "FINALIZED") {
          to = f;
          break;
        }
      if (to.empty()) {
        out.error = note + ", and no earlier verified-good version is FINALIZED: nothing was changed";
        co_return out;
      }
      note += "; rolled back to the previous good FINALIZED version " + to + " instead";
    }
    Plan actual = p;
    actual.to = to;
    const std::string url = api_ + "sites/" + site_ + "/channels/live/releases?versionName=sites/" + site_ + "/versions/" + to;
    std::string err;
    const std::string method = "POST";  // (GCC 12: no string literals or braced lists inside co_await arguments)
    std::string body = json{{"message", message(actual)}}.dump();
    auto res = co_await authed(method, url, std::move(body), err);
    if (!err.empty()) {
      out.error = err;
      co_return out;
    }
    auto& r = std::get<HttpResponse>(res);
    if (r.status < 200 || r.status > 299) {
      out.error = "creating the release: HTTP " + std::to_string(r.status) + (r.status == 401 || r.status == 403 ? " (credentials refused)" : "") +
                  ": " + cap_output(r.body, 300);
      co_return out;
    }
    auto doc = json::parse(r.body, nullptr, false);
    out.ok = true;
    out.output = "created " + (str_at(doc, "name").empty() ? std::string("a release") : str_at(doc, "name")) + " -> " + to +
                 (note.empty() ? "" : " (" + note + ")");
    if (to != p.to) out.switched_to = to;
    co_return out;
  }

 private:
  // The status of sites/SITE/versions/V ("FINALIZED", ...); "" when it does not exist or cannot be read.
  asio::awaitable<std::string> version_status(const std::string& site, const std::string& version) {
    const std::string url = api_ + "sites/" + site + "/versions/" + version;
    const std::string method = "GET";
    std::string no_body, err;
    auto res = co_await authed(method, url, no_body, err);
    if (!err.empty() || std::get<HttpResponse>(res).status != 200) co_return "";
    co_return str_at(json::parse(std::get<HttpResponse>(res).body, nullptr, false), "status");
  }

  // sites.versions.clone into this site, finalized; follows the long-running operation until it
  // is done (bounded). The new version's id in *made, or why not.
  asio::awaitable<std::string> clone_version(const std::string& source, const std::string& version, std::string& made) {
    const std::string url = api_ + "sites/" + site_ + "/versions:clone";
    const std::string method = "POST";
    std::string body = json{{"sourceVersion", "sites/" + source + "/versions/" + version}, {"finalize", true}}.dump();
    std::string err;
    auto res = co_await authed(method, url, std::move(body), err);
    if (!err.empty()) co_return err;
    const auto give_up = Clock::now() + std::chrono::minutes(2);
    for (;;) {
      const auto& r = std::get<HttpResponse>(res);
      if (r.status < 200 || r.status > 299)
        co_return "HTTP " + std::to_string(r.status) + (r.status == 401 || r.status == 403 ? " (credentials refused)" : "") + ": " + cap_output(r.body, 300);
      const json op = json::parse(r.body, nullptr, false);
      if (!op.is_object()) co_return "the answer is not a JSON object";
      if (op.value("done", false) == true) {
        if (op.contains("error") && op["error"].is_object()) co_return "the clone failed: " + str_at(op["error"], "message");
        const json resp = op.contains("response") && op["response"].is_object() ? op["response"] : json::object();
        const std::string name = str_at(resp, "name");
        const std::string prefix = "sites/" + site_ + "/versions/";
        made = name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : "";
        if (!valid_release_name(made)) co_return "the clone's answer names no version of " + site_ + " (\"" + name.substr(0, 100) + "\")";
        if (const std::string st = str_at(resp, "status"); !st.empty() && st != "FINALIZED") co_return "the cloned version is " + st + ", not FINALIZED";
        co_return "";
      }
      const std::string op_name = str_at(op, "name");
      static const RE2 op_re(R"([A-Za-z0-9_./-]{1,200})");
      if (!RE2::FullMatch(op_name, op_re) || op_name.find("..") != std::string::npos || op_name.front() == '/')
        co_return "the clone is not done and names no operation to follow";
      if (Clock::now() > give_up) co_return "the clone was not done after 2 minutes (operation " + op_name + ")";
      asio::steady_timer wait(ex_, std::chrono::milliseconds(500));
      co_await wait.async_wait(asio::use_awaitable);
      const std::string op_url = api_ + op_name;
      const std::string get = "GET";
      std::string no_body;
      res = co_await authed(get, op_url, no_body, err);
      if (!err.empty()) co_return err;
    }
  }

  std::string message(const Plan& p) const {
    std::string m = "lastgood rollback " + p.from + " -> " + p.to + (p.context.trigger.empty() ? "" : " (trigger " + p.context.trigger + ")") +
                    (p.context.reason.empty() ? "" : ": " + p.context.reason);
    return m.substr(0, 512);
  }

  // The string at `key` of an object; "" when absent or not a string.
  static std::string str_at(const json& j, const char* key) {
    if (!j.is_object()) return "";
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  }

  // Every page of the live channel's releases, oldest first by releaseTime.
  asio::awaitable<std::string> list(std::vector<FirebaseRelease>& out) {
    const std::string site = site_;
    co_return co_await list(out, site);
  }
  asio::awaitable<std::string> list(std::vector<FirebaseRelease>& out, const std::string& site_) {
    std::string page;
    for (int pages = 0; pages < 100; ++pages) {
      std::string url = api_ + "sites/" + site_ + "/channels/live/releases?pageSize=100" + (page.empty() ? "" : "&pageToken=" + page);
      std::string err;
      const std::string method = "GET";
      std::string no_body;  // (GCC 12: no temporaries in co_await'ed calls)
      auto res = co_await authed(method, url, no_body, err);
      if (!err.empty()) co_return err;
      auto& r = std::get<HttpResponse>(res);
      if (r.status != 200)
        co_return "listing releases of " + site_ + ": HTTP " + std::to_string(r.status) +
            (r.status == 401 || r.status == 403 ? " (credentials refused)" : "");
      auto doc = json::parse(r.body, nullptr, false);
      if (doc.is_discarded() || !doc.is_object()) co_return "listing releases of " + site_ + ": the answer is not a JSON object";
      const json& releases = doc.contains("releases") ? doc["releases"] : json::array();
      if (!releases.is_array()) co_return "listing releases of " + site_ + ": \"releases\" is not an array";
      for (const auto& rel : releases) {  // the API may lie: every field's type is checked, nothing throws
        if (!rel.is_object()) co_return "listing releases of " + site_ + ": a release is not an object";
        FirebaseRelease fr;
        const json& v = rel.contains("version") && rel["version"].is_object() ? rel["version"] : json::object();
        const std::string vname = str_at(v, "name");
        fr.version_id = vname.substr(vname.rfind('/') + 1);
        fr.version_status = str_at(v, "status");
        fr.type = str_at(rel, "type");
        if (const std::string t = str_at(rel, "releaseTime"); !t.empty()) fr.at = net::parse_rfc3339(t);
        if (fr.type != "SITE_DISABLE" && !fr.version_id.empty()) out.push_back(fr);
      }
      page = str_at(doc, "nextPageToken");
      if (page.empty()) break;
    }
    std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.at < b.at; });
    co_return "";
  }

  asio::awaitable<net::HttpResult> authed(const std::string& method, const std::string& url, std::string body, std::string& err) {
    std::string token = co_await access_token(err);
    if (!err.empty()) co_return net::HttpError{HttpError::Stage::protocol, false, err};
    std::vector<std::pair<std::string, std::string>> h{{"Authorization", "Bearer " + token}};
    if (!body.empty()) h.emplace_back("Content-Type", "application/json");
    auto res = co_await net::http_once(ex_, method, url, h, std::move(body), Clock::now() + std::chrono::seconds(30), 16 * 1024 * 1024);
    if (auto* e = std::get_if<HttpError>(&res)) err = method + " " + url.substr(0, url.find('?')) + ": " + e->message;
    else if (std::get<HttpResponse>(res).status == 401) cached_.clear();  // refresh next time
    co_return res;
  }

  // The access token: static, cached from the token endpoint, or from the metadata server.
  asio::awaitable<std::string> access_token(std::string& err) {
    if (static_token_) {
      std::string problem;
      std::string t = static_token_->fresh(&problem);
      if (!problem.empty()) spdlog::warn("firebase_hosting {}: token: {}", service_, problem);
      co_return t;
    }
    if (!cached_.empty() && Clock::now() < cached_until_) co_return cached_;
    std::string token_url, form;
    std::vector<std::pair<std::string, std::string>> h;
    std::string method = "POST";
    if (metadata_) {
      const char* host = std::getenv("GCE_METADATA_HOST");
      token_url = std::string("http://") + (host ? host : "metadata.google.internal") +
                  "/computeMetadata/v1/instance/service-accounts/default/token";
      h.emplace_back("Metadata-Flavor", "Google");
      method = "GET";
    } else {
      std::ifstream in(credentials_file_);
      std::stringstream ss;
      ss << in.rdbuf();
      json sa = json::parse(ss.str(), nullptr, false);
      if (!in || sa.is_discarded() || str_at(sa, "client_email").empty() || str_at(sa, "private_key").empty()) {
        err = "credentials_file " + credentials_file_ + " is not a service-account key (client_email, private_key)";
        co_return "";
      }
      token_url = !token_uri_override_.empty() ? token_uri_override_ : (str_at(sa, "token_uri").empty() ? std::string("https://oauth2.googleapis.com/token") : str_at(sa, "token_uri"));
      const auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
      const std::string jwt = sign_jwt_rs256(
          {{"iss", sa["client_email"]}, {"scope", kScope}, {"aud", token_url}, {"iat", now}, {"exp", now + 3600}}, sa["private_key"].get<std::string>());
      if (jwt.empty()) {
        err = "credentials_file " + credentials_file_ + ": the private key could not sign";
        co_return "";
      }
      form = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=" + jwt;
      h.emplace_back("Content-Type", "application/x-www-form-urlencoded");
    }
    auto res = co_await net::http_once(ex_, method, token_url, h, form, Clock::now() + std::chrono::seconds(20), 1024 * 1024);
    if (auto* e = std::get_if<HttpError>(&res)) {
      err = "getting an access token: " + e->message;
      co_return "";
    }
    auto& r = std::get<HttpResponse>(res);
    auto doc = json::parse(r.body, nullptr, false);
    if (r.status != 200 || str_at(doc, "access_token").empty()) {
      err = "getting an access token: HTTP " + std::to_string(r.status) + " " +
            (str_at(doc, "error_description").empty() ? str_at(doc, "error") : str_at(doc, "error_description"));
      co_return "";
    }
    cached_ = str_at(doc, "access_token");
    const int ttl = doc.contains("expires_in") && doc["expires_in"].is_number_integer() ? static_cast<int>(std::clamp<long long>(doc["expires_in"].get<long long>(), 60, 86400)) : 3600;
    cached_until_ = Clock::now() + std::chrono::seconds(std::max(ttl - 120, ttl / 2));
    co_return cached_;
  }

  asio::any_io_executor ex_;
  std::string service_, site_, source_site_, api_, credentials_file_, token_uri_override_;
  std::optional<config::Secret> static_token_;
  bool metadata_ = false;
  std::string cached_;
  Clock::time_point cached_until_{};
};

}  // namespace

namespace {

using config::detail::Obj;

std::shared_ptr<const config::KindSpec> parse(Obj& o) {
  auto d = std::make_shared<FirebaseHostingSpec>();
  if (auto s = o.str("site", true)) {
    static const RE2 re(R"([a-z0-9][a-z0-9-]{0,62})");
    if (!RE2::FullMatch(*s, re)) o.ctx().error(o.at("site"), "expected a Firebase site id (lowercase letters, digits, '-'), found \"" + *s + "\"");
    d->site = *s;
  }
  if (auto s = o.str("source_site")) {
    static const RE2 re(R"([a-z0-9][a-z0-9-]{0,62})");
    if (!RE2::FullMatch(*s, re)) o.ctx().error(o.at("source_site"), "expected a Firebase site id (lowercase letters, digits, '-'), found \"" + *s + "\"");
    d->source_site = *s;
  }
  auto cred = o.str("credentials_file");
  d->token = o.secret("token", false);
  auto meta = o.boolean("metadata_server");
  if (cred) d->credentials_file = *cred;
  d->metadata_server = meta.value_or(false);
  const int n = (cred ? 1 : 0) + (d->token ? 1 : 0) + (d->metadata_server ? 1 : 0);
  if (n != 1) o.ctx().error(o.ptr(), "expected exactly one of credentials_file, token_env/token_file, \"metadata_server\": true");
  if (auto a = o.str("api_base")) {
    if (!net::parse_url(*a) || a->back() != '/') o.ctx().error(o.at("api_base"), "expected a URL ending in '/', found \"" + *a + "\"");
    d->api_base = *a;
  }
  if (auto t = o.url("token_uri", false, "a URL")) d->token_uri = *t;
  return d;
}

std::unique_ptr<Action> make(asio::any_io_executor ex, const std::string& service, const config::Deployment& d) {
  return std::make_unique<Firebase>(std::move(ex), service, d);
}

}  // namespace

const Kind firebase_hosting_kind{{"firebase_hosting", parse}, make};

}  // namespace lastgood::actions
