#include "probes/npm_registry.hpp"

#include "config/reader.hpp"
#include "net/http_once.hpp"
#include "net/npm.hpp"

namespace lastgood::probes {

using net::check_integrity;
using net::http_once;
using net::HttpError;
using net::HttpResponse;
using net::HttpResult;
using net::npm_escape;

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

class NpmRegistryProbe final : public Probe {
 public:
  NpmRegistryProbe(asio::any_io_executor ex, std::string service, const config::Probe& spec)
      : ex_(std::move(ex)), service_(std::move(service)), spec_(spec), npm_(config::spec_as<NpmRegistrySpec>(spec.spec)) {
    base_ = npm_.registry;
    if (base_.empty() || base_.back() != '/') base_ += '/';
    // npm_.token is read again at each run (a file: a rotated token needs no restart).
  }
  const config::Probe& spec() const override { return spec_; }

  asio::awaitable<ProbeResult> run() override {
    ProbeResult r = begin_result(service_, spec_.name);
    const auto t0 = Clock::now();
    const auto deadline = t0 + spec_.timeout;
    auto headers = auth();
    headers.emplace_back("Accept", "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8");
    auto res = co_await http_once(ex_, "GET", base_ + npm_escape(npm_.package), headers, "", deadline, 32 * 1024 * 1024);
    r.timing.total = Clock::now() - t0;
    if (auto* err = std::get_if<HttpError>(&res)) {
      if (err->stage == HttpError::Stage::resolve || err->watcher) r.outcome = Outcome::error;
      r.failures.push_back({err->timeout ? "timeout" : "packument", err->message});
      finish_result(r);
      if (err->stage == HttpError::Stage::resolve || err->watcher) r.reason = err->message;
      co_return r;
    }
    auto& pr = std::get<HttpResponse>(res);
    r.http_status = pr.status;
    if (pr.status != 200) {
      r.failures.push_back({"status", "packument: HTTP " + std::to_string(pr.status)});
      finish_result(r);
      co_return r;
    }
    json doc = json::parse(pr.body, nullptr, false);
    if (doc.is_discarded() || !doc.contains("dist-tags")) {
      r.failures.push_back({"packument", "the packument is not JSON with dist-tags"});
      finish_result(r);
      co_return r;
    }
    if (!doc["dist-tags"].contains(npm_.tag) || !doc["dist-tags"][npm_.tag].is_string()) {
      r.failures.push_back({"tag", "dist-tag " + npm_.tag + " does not exist"});
      finish_result(r);
      co_return r;
    }
    const std::string version = doc["dist-tags"][npm_.tag].get<std::string>();
    r.observed_release = version;
    r.details["version"] = version;
    const json& v = doc["versions"].contains(version) ? doc["versions"][version] : json();
    if (!v.is_object() || !v.contains("dist")) {
      r.failures.push_back({"tag", npm_.tag + " -> " + version + ", which is not in versions"});
      finish_result(r);
      co_return r;
    }
    if (npm_.check_deprecated && v.contains("deprecated") && v["deprecated"].is_string() && !v["deprecated"].get<std::string>().empty())
      r.failures.push_back({"deprecated", version + " is deprecated: " + v["deprecated"].get<std::string>().substr(0, 120)});
    const std::string tarball = v["dist"].value("tarball", "");
    auto tr = co_await http_once(ex_, "GET", tarball, auth(), "", deadline, npm_.max_tarball_bytes);
    r.timing.total = Clock::now() - t0;
    if (auto* err = std::get_if<HttpError>(&tr)) {
      r.failures.push_back({err->timeout ? "timeout" : "tarball", "tarball " + tarball + ": " + err->message});
    } else {
      auto& t = std::get<HttpResponse>(tr);
      if (t.status != 200) r.failures.push_back({"tarball", "tarball " + tarball + ": HTTP " + std::to_string(t.status)});
      else if (auto why = check_integrity(t.body, v["dist"]); !why.empty()) r.failures.push_back({"integrity", version + ": " + why});
      r.details["tarball_bytes"] = t.body.size();
    }
    finish_result(r);
    co_return r;
  }

 private:
  std::vector<std::pair<std::string, std::string>> auth() const {
    if (!npm_.token) return {};
    const std::string token = npm_.token->fresh();
    if (token.empty()) return {};
    return {{"Authorization", "Bearer " + token}};
  }
  asio::any_io_executor ex_;
  std::string service_;
  const config::Probe& spec_;  // the immutable config outlives every probe made from it
  const NpmRegistrySpec& npm_;  // inside spec_
  std::string base_;
};

}  // namespace

namespace {

std::shared_ptr<const config::KindSpec> parse(config::detail::Obj& o) {
  auto n = std::make_shared<NpmRegistrySpec>();
  if (auto r = o.url("registry", false, "a registry URL like \"https://registry.npmjs.org/\"")) n->registry = *r;
  if (auto p = o.str("package", true)) {
    if (!net::valid_npm_name(*p))
      o.ctx().error(o.at("package"), "expected an npm package name like \"name\" or \"@scope/name\", found \"" + *p + "\"");
    n->package = *p;
  }
  if (auto t = o.str("tag")) n->tag = *t;
  if (auto b = o.boolean("check_deprecated")) n->check_deprecated = *b;
  if (auto t = o.secret("token", false)) n->token = *t;
  if (auto m = o.integer("max_tarball_bytes", 1024, 1024LL * 1024 * 1024)) n->max_tarball_bytes = static_cast<size_t>(*m);
  return n;
}

std::unique_ptr<Probe> make(asio::any_io_executor ex, const std::string& service, const config::Probe& spec) {
  return std::make_unique<NpmRegistryProbe>(std::move(ex), service, spec);
}

}  // namespace

const Kind npm_registry_kind{{"npm_registry", parse}, make};

}  // namespace lastgood::probes
