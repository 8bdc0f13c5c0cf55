#include "actions/npm_dist_tag.hpp"

#include <spdlog/spdlog.h>

#include "config/reader.hpp"

#include "net/http_once.hpp"
#include "net/url.hpp"
#include "net/npm.hpp"
#include "net/time.hpp"

#include "actions/process.hpp"

#include <stdlib.h>

#include <cerrno>
#include <cstring>

#include <filesystem>
#include <fstream>

namespace lastgood::actions {

namespace asio = boost::asio;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using net::HttpError;
using net::HttpResponse;

namespace {

constexpr std::chrono::hours kUnpublishWindow{72};

class NpmDistTag final : public Action {
 public:
  NpmDistTag(asio::any_io_executor ex, std::string service, const config::Deployment& d) : ex_(std::move(ex)), service_(std::move(service)) {
    const auto& spec = config::spec_as<NpmPackageSpec>(d.spec);
    base_ = spec.registry;
    if (base_.back() != '/') base_ += '/';
    package_ = spec.package;
    tag_ = spec.tag;
    strategy_ = spec.strategy;
    allow_unpublish_ = spec.allow_unpublish;
    if (spec.timeout) timeout_ = *spec.timeout;
    verify_integrity_ = spec.verify_integrity;
    verify_command_ = spec.verify_command;
    if (spec.verify_timeout) verify_timeout_ = *spec.verify_timeout;
    token_ = spec.token;  // read again at each use (a file: a rotated token needs no restart)
  }
  const char* kind() const override { return "npm_package"; }

  asio::awaitable<Observation> observe() override {
    Observation o;
    json doc;
    if (auto err = co_await get_packument(false, doc); !err.empty()) {
      o.error = err;
      co_return o;
    }
    const json& tags = doc["dist-tags"];
    if (!tags.is_object() || !tags.contains(tag_)) {
      o.error = "dist-tag " + tag_ + " of " + package_ + " does not exist";
      co_return o;
    }
    if (!tags[tag_].is_string()) {  // a registry that lies: an error, never an exception
      o.error = "dist-tag " + tag_ + " of " + package_ + " is not a version string (" + tags[tag_].type_name() + ")";
      co_return o;
    }
    const std::string v = tags[tag_].get<std::string>();
    ObservedRelease live{v, std::nullopt, false};
    const json* time = doc.contains("time") && doc["time"].is_object() ? &doc["time"] : nullptr;
    if (time && time->contains(v) && (*time)[v].is_string()) live.deployed_at = net::parse_rfc3339((*time)[v].get<std::string>());
    o.live = live;
    if (time)
      for (auto& [ver, t] : time->items())
        if (ver != "created" && ver != "modified" && t.is_string()) o.history.push_back({ver, net::parse_rfc3339(t.get<std::string>()), false});
    std::sort(o.history.begin(), o.history.end(), [](const auto& a, const auto& b) { return a.deployed_at < b.deployed_at; });
    co_return o;
  }

  Plan plan(const std::string& from, const std::string& to, const Context& ctx) const override {
    Plan p{from, to, ctx, {}};
    if (verify_integrity_) p.steps.push_back("download " + package_ + "@" + to + "'s tarball and check it against dist.integrity");
    if (!verify_command_.empty()) p.steps.push_back("run the smoke command in the unpacked " + package_ + "@" + to);
    p.steps.push_back("PUT " + base_ + "-/package/" + net::npm_escape(package_) + "/dist-tags/" + tag_ + " \"" + to + "\"");
    if (strategy_ == "deprecate") p.steps.push_back("deprecate " + package_ + "@" + from + ": \"" + message(p) + "\"");
    if (strategy_ == "unpublish")
      p.steps.push_back("unpublish " + package_ + "@" + from + " if published less than 72h ago (else deprecate it)");
    return p;
  }

  asio::awaitable<Outcome> execute(const Plan& p) override {
    Outcome out;
    // 0. The tag must still name plan.from (read just before it is moved).
    {
      const Observation now = co_await observe();
      if (!now.live) {
        out.error = "reading " + tag_ + " of " + package_ + " before moving it failed: " + now.error + "; nothing was changed";
        co_return out;
      }
      if (now.live->id != p.from) co_return refused_not_from(p, now.live->id);
    }
    // 0b. The target itself: its tarball as the registry serves it now matches its integrity, and
    // the smoke command passes on it. A target that fails is never tagged.
    if (verify_integrity_ || !verify_command_.empty()) {
      std::string checked;
      const std::string why = co_await check_target(p.to, &checked);
      out.output = checked;
      if (!why.empty()) {
        out.error = "the target " + package_ + "@" + p.to + " failed its check: " + why + "; nothing was changed";
        co_return out;
      }
    }
    // 1. The tag back to the good version: the part users feel at once.
    auto res = co_await call("PUT", base_ + "-/package/" + net::npm_escape(package_) + "/dist-tags/" + tag_, json(p.to).dump());
    if (auto why = failed(res, "moving " + tag_ + " to " + p.to); !why.empty()) {
      out.error = why;  // nothing else was attempted
      co_return out;
    }
    out.output += (out.output.empty() ? "" : "; ") + tag_ + " -> " + p.to;
    if (strategy_ == "retag") {
      out.ok = true;
      co_return out;
    }
    std::string strategy = strategy_;
    if (strategy == "unpublish") {
      json doc;
      if (auto err = co_await get_packument(true, doc); !err.empty()) {
        out.error = "tag moved, then reading the packument to unpublish failed: " + err;
        co_return out;
      }
      auto published = doc.contains("time") && doc["time"].is_object() && doc["time"].contains(p.from) && doc["time"][p.from].is_string()
                           ? net::parse_rfc3339(doc["time"][p.from].get<std::string>())
                           : std::nullopt;
      const auto age = published ? std::chrono::system_clock::now() - *published : std::chrono::system_clock::duration::max();
      if (!allow_unpublish_ || !published || age >= kUnpublishWindow) {
        out.output += "; not unpublishing " + p.from + ": " +
                      (!allow_unpublish_ ? std::string("allow_unpublish is false")
                                         : !published ? std::string("its publish time is unknown")
                                                      : "published " + std::to_string(std::chrono::duration_cast<std::chrono::hours>(age).count()) +
                                                            "h ago (npm allows 72h)") +
                      "; deprecating instead";
        strategy = "deprecate";
      } else {
        auto err = co_await unpublish(doc, p.from);
        if (err.empty()) {
          out.output += "; unpublished " + p.from;
          out.ok = true;
          co_return out;
        }
        // Refused by the registry (its policy, dependents, a lock): deprecate instead, as the
        // playbook says, unless the version is gone already (its tarball alone could not be deleted).
        json after;
        if (auto e2 = co_await get_packument(true, after); e2.empty() && !(after["versions"].contains(p.from))) {
          out.output += "; unpublished " + p.from + " from the packument, but deleting its tarball failed: " + err;
          out.ok = true;
          co_return out;
        }
        out.output += "; the registry refused to unpublish " + p.from + " (" + err + "); deprecating instead";
        strategy = "deprecate";
      }
    }
    // deprecate
    json doc;
    if (auto err = co_await get_packument(true, doc); !err.empty()) {
      out.error = "tag moved, then reading the packument to deprecate failed: " + err;
      co_return out;
    }
    if (!doc["versions"].contains(p.from) || !doc["versions"][p.from].is_object()) {
      out.error = "tag moved, but " + p.from + " is not in the packument";
      co_return out;
    }
    doc["versions"][p.from]["deprecated"] = message(p);
    auto put = co_await call("PUT", base_ + net::npm_escape(package_), doc.dump());
    if (auto why = failed(put, "deprecating " + p.from); !why.empty()) {
      out.error = "tag moved, " + why;
      co_return out;
    }
    out.output += "; deprecated " + p.from;
    out.ok = true;
    co_return out;
  }

 private:
  // Downloads `version`'s tarball, checks it against dist.integrity, and runs the smoke command in
  // the unpacked package. "" when it passes, else why not; what was done is appended to *log.
  asio::awaitable<std::string> check_target(const std::string& version, std::string* log) {
    json doc;
    if (auto err = co_await get_packument(false, doc); !err.empty()) co_return err;
    if (!doc["versions"].contains(version) || !doc["versions"][version].is_object()) co_return "it is not in the packument";
    const json dist = doc["versions"][version].value("dist", json::object());
    if (!dist.is_object() || !dist.contains("tarball") || !dist["tarball"].is_string()) co_return "its packument entry names no tarball";
    const std::string url = dist["tarball"].get<std::string>();
    const std::string method = "GET";
    std::string no_body;
    auto res = co_await call(method, url, no_body, 64 * 1024 * 1024);
    if (auto why = failed(res, "downloading its tarball"); !why.empty()) co_return why;
    const std::string& tgz = std::get<HttpResponse>(res).body;
    if (verify_integrity_) {
      if (auto why = net::check_integrity(tgz, dist); !why.empty()) co_return "tarball " + why;
      *log += "tarball of " + version + " matches its integrity (" + std::to_string(tgz.size()) + " bytes)";
    }
    if (verify_command_.empty()) co_return "";
    // Unpacked in a directory of its own (tar, as npm's own tarballs are gzip'd tar), the command
    // runs in package/ with only PATH, bounded by its timeout; the directory is removed after.
    namespace fs = std::filesystem;
    std::string tmpl = (fs::temp_directory_path() / "lastgood-npm-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) co_return std::string("cannot make a temporary directory: ") + std::strerror(errno);
    const fs::path dir = tmpl;
    struct Remove {
      fs::path d;
      ~Remove() {
        std::error_code ec;
        fs::remove_all(d, ec);
      }
    } cleanup{dir};
    {
      std::ofstream f(dir / "package.tgz", std::ios::binary);
      f.write(tgz.data(), static_cast<std::streamsize>(tgz.size()));
      if (!f) co_return "cannot write the tarball to " + dir.string();
    }
    const std::vector<std::string> untar{"tar", "-xzf", (dir / "package.tgz").string(), "-C", dir.string(), "--no-same-owner"};
    const std::vector<std::string> allow{"PATH"};
    const std::chrono::milliseconds untar_limit{60'000};
    ProcessResult t = co_await run_process(ex_, untar, allow, untar_limit);
    if (!t.succeeded()) co_return "unpacking its tarball: " + t.describe() + (t.err.empty() ? "" : ": " + cap_output(t.err, 300));
    const std::vector<std::string> argv = verify_command_;
    const std::chrono::milliseconds limit = verify_timeout_;
    const size_t cap = 8 * 1024;
    const std::vector<std::string> env{"LASTGOOD_PACKAGE=" + package_, "LASTGOOD_VERSION=" + version};
    const std::string cwd = (dir / "package").string();
    ProcessResult r = co_await run_process(ex_, argv, allow, limit, cap, env, cwd);
    std::string line;
    for (const auto& a : argv) line += (line.empty() ? "" : " ") + a;
    *log += std::string(log->empty() ? "" : "; ") + "smoke command `" + line + "` on " + version + ": " + r.describe();
    if (!r.succeeded())
      co_return "the smoke command `" + line + "` " + (r.timed_out ? "was killed after its timeout" : r.describe()) +
                (r.err.empty() ? "" : ": " + cap_output(r.err, 500));
    co_return "";
  }

  std::string message(const Plan& p) const {
    std::string m = "lastgood rolled " + package_ + " back from " + p.from + " to " + p.to + (p.context.trigger.empty() ? "" : " (trigger " + p.context.trigger + ")") +
                    "; use " + p.to;
    return m.substr(0, 500);
  }

  asio::awaitable<net::HttpResult> call(std::string method, std::string url, std::string body, std::size_t max_body = 32 * 1024 * 1024) {
    std::vector<std::pair<std::string, std::string>> h;
    std::string problem;
    if (const std::string t = token_.empty() ? std::string() : token_.fresh(&problem); !t.empty()) h.emplace_back("Authorization", "Bearer " + t);
    if (!problem.empty()) spdlog::warn("npm_package {}: token: {}", service_, problem);
    if (!body.empty()) h.emplace_back("Content-Type", "application/json");
    h.emplace_back("Accept", "application/json");
    const auto deadline = Clock::now() + timeout_;
    co_return co_await net::http_once(ex_, std::move(method), std::move(url), std::move(h), std::move(body), deadline, max_body);
  }

  static std::string failed(const net::HttpResult& res, const std::string& what) {
    if (auto* e = std::get_if<HttpError>(&res)) return what + ": " + e->message;
    const auto& r = std::get<HttpResponse>(res);
    if (r.status >= 200 && r.status < 300) return "";
    std::string why = what + ": HTTP " + std::to_string(r.status);
    if (r.status == 401 || r.status == 403) why += " (the token was refused or lacks publish rights)";
    return why + ": " + cap_output(r.body, 200);
  }

  asio::awaitable<std::string> get_packument(bool write, json& doc) {
    std::string url = base_ + net::npm_escape(package_) + (write ? "?write=true" : "");
    auto res = co_await call("GET", std::move(url), "");
    if (auto why = failed(res, "reading " + package_); !why.empty()) co_return why;
    doc = json::parse(std::get<HttpResponse>(res).body, nullptr, false);
    if (doc.is_discarded() || !doc.is_object() || !doc.contains("dist-tags") || !doc["dist-tags"].is_object() || !doc.contains("versions") ||
        !doc["versions"].is_object())
      co_return "the packument of " + package_ + " is not valid";
    co_return "";
  }

  // As the npm CLI does it (fixtures/npm-cli-requests-deprecate-unpublish.json).
  asio::awaitable<std::string> unpublish(json doc, const std::string& version) {
    if (!doc["versions"].contains(version) || !doc["versions"][version].is_object()) co_return version + " is not in the packument";
    const json& ver = doc["versions"][version];
    const std::string tarball = ver.contains("dist") && ver["dist"].is_object() && ver["dist"].contains("tarball") && ver["dist"]["tarball"].is_string()
                                    ? ver["dist"]["tarball"].get<std::string>()
                                    : std::string();
    doc["versions"].erase(version);
    for (auto it = doc["dist-tags"].begin(); it != doc["dist-tags"].end();) {
      if (it.value() == version) it = doc["dist-tags"].erase(it);
      else ++it;
    }
    doc.erase("_revisions");
    doc.erase("_attachments");
    const std::string rev = doc.contains("_rev") && doc["_rev"].is_string() ? doc["_rev"].get<std::string>() : std::string();
    auto put = co_await call("PUT", base_ + net::npm_escape(package_) + "/-rev/" + rev, doc.dump());
    if (auto why = failed(put, "removing " + version); !why.empty()) co_return why;
    json fresh;
    if (auto err = co_await get_packument(true, fresh); !err.empty()) co_return err;
    auto u = net::parse_url(tarball);
    if (!u) co_return "no tarball URL for " + version;
    std::string path = u->target;
    // (GCC 12: no conditional temporaries inside co_await arguments; they are destroyed twice)
    const std::string fresh_rev = fresh.contains("_rev") && fresh["_rev"].is_string() ? fresh["_rev"].get<std::string>() : std::string();
    std::string del_url = base_ + path.substr(1) + "/-rev/" + fresh_rev;
    auto del = co_await call("DELETE", std::move(del_url), "");
    if (auto why = failed(del, "deleting the tarball of " + version); !why.empty()) co_return why;
    co_return "";
  }

  asio::any_io_executor ex_;
  std::string service_, base_, package_, tag_, strategy_;
  config::Secret token_;
  bool allow_unpublish_ = false;
  bool verify_integrity_ = true;
  std::vector<std::string> verify_command_;
  std::chrono::milliseconds verify_timeout_{120'000};
  std::chrono::milliseconds timeout_{30'000};
};

}  // namespace

namespace {

using config::detail::Obj;

std::shared_ptr<const config::KindSpec> parse(Obj& o) {
  auto d = std::make_shared<NpmPackageSpec>();
  if (auto r = o.url("registry", false, "a registry URL like \"https://registry.npmjs.org/\"")) d->registry = *r;
  if (auto p = o.str("package", true)) {
    if (!net::valid_npm_name(*p))
      o.ctx().error(o.at("package"), "expected an npm package name like \"name\" or \"@scope/name\", found \"" + *p + "\"");
    d->package = *p;
  }
  if (auto t = o.secret("token", true)) d->token = *t;
  if (auto t = o.str("tag")) d->tag = *t;
  if (auto t = o.duration("timeout", false, config::Duration{100})) d->timeout = *t;
  if (auto s = o.one_of("strategy", {"retag", "deprecate", "unpublish"})) d->strategy = *s;
  if (auto a = o.boolean("allow_unpublish")) d->allow_unpublish = *a;
  if (const json* v = o.get("verify")) {
    Obj vo(o.ctx(), *v, o.at("verify"));
    if (auto b = vo.boolean("integrity")) d->verify_integrity = *b;
    if (auto c = vo.strings("command", false, true)) d->verify_command = *c;
    if (auto t = vo.duration("timeout", false, config::Duration{100})) d->verify_timeout = *t;
  }
  if (d->strategy == "unpublish" && !d->allow_unpublish)
    o.ctx().error(o.at("allow_unpublish"), "strategy \"unpublish\" needs \"allow_unpublish\": true");
  return d;
}

std::unique_ptr<Action> make(asio::any_io_executor ex, const std::string& service, const config::Deployment& d) {
  return std::make_unique<NpmDistTag>(std::move(ex), service, d);
}

}  // namespace

const Kind npm_package_kind{{"npm_package", parse}, make};

}  // namespace lastgood::actions
