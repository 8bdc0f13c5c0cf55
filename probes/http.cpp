#include "probes/http.hpp"

#include <re2/re2.h>

#include <spdlog/spdlog.h>

#include "config/reader.hpp"
#include "net/http_client.hpp"

namespace lastgood::probes {

using net::default_tls_context;
using net::HttpConnection;
using net::HttpError;
using net::HttpRequest;
using net::HttpResponse;
using net::HttpResult;
using net::shared_tls_context;
using net::parse_url;
using net::resolve_location;
using net::Url;

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

std::string fmt_ms(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0fms", ms);
  return buf;
}

std::string status_list(const std::vector<config::StatusRange>& v) {
  std::string out;
  for (const auto& r : v) {
    if (!out.empty()) out += ", ";
    out += r.lo == r.hi ? std::to_string(r.lo) : std::to_string(r.lo) + "-" + std::to_string(r.hi);
  }
  return out;
}

std::string snippet(const std::string& s, size_t n = 80) {
  std::string out = s.substr(0, n);
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  return s.size() > n ? out + "..." : out;
}

class HttpProbe final : public Probe, private HttpConnection::Sink {
 public:
  HttpProbe(asio::any_io_executor ex, std::string service, const config::Probe& spec)
      : service_(std::move(service)), spec_(spec), http_(config::spec_as<HttpSpec>(spec_.spec)) {
    const Url url = *parse_url(http_.url);  // validated at load
    if (url.tls()) {
      if (http_.insecure_skip_verify)
        spdlog::warn("probe {}/{}: TLS verification is OFF (insecure_skip_verify): certificates and host names are not checked",
                     service_, spec_.name);
      tls_ = http_.ca_file || http_.insecure_skip_verify ? shared_tls_context({http_.ca_file, http_.insecure_skip_verify}) : default_tls_context();
    }
    if (http_.expect.body_matches) {
      RE2::Options opts;
      opts.set_log_errors(false);
      body_re_ = std::make_unique<RE2>(*http_.expect.body_matches, opts);  // validated at load
    }
    conn_ = std::make_unique<HttpConnection>(std::move(ex), url, tls_);
    conn_->keep_headers(!http_.expect.header.empty() || http_.follow_redirects > 0);  // `header` expectations, Location
    conn_->limit_by_budget();
    request_ = conn_->serialize(make_request(url));
    head_ = http_.method == "HEAD";
  }

  const config::Probe& spec() const override { return spec_; }

  // `foreign`: a redirect took the probe to another origin than the configured URL's; the
  // configured headers (Authorization, API keys) are not sent there (as curl does).
  HttpRequest make_request(const Url& target, bool foreign = false) const {
    HttpRequest req;
    req.method = http_.method;
    req.target = target.target;
    if (!foreign)
      for (const auto& [k, v] : http_.headers) req.headers.emplace_back(k, v);
    if (http_.body) req.body = *http_.body;
    return req;
  }

  // The coroutine only fetches; judging is a plain function. GCC keeps every local of a coroutine
  // (and every temporary of its expressions) in the heap-allocated frame for the whole run, so
  // judging inside it made the frame 2.7 KB per run in flight (docs/benchmarks.md).
  asio::awaitable<ProbeResult> run() override {
    const auto started_at = std::chrono::system_clock::now();
    const auto deadline = Clock::now() + spec_.timeout;
    if (http_.follow_redirects == 0) {
      if (auto* bad = std::get_if<HttpError>(&request_)) co_return judge(started_at, deadline, *bad, 0);
      co_return judge(started_at, deadline, co_await conn_->request(std::get<std::string>(request_), head_, deadline, http_.max_body_bytes), 0);
    }
    int redirects = 0;
    HttpResult res = co_await fetch_following(deadline, redirects);
    co_return judge(started_at, deadline, std::move(res), redirects);
  }

  // The steady state: the configured request on the kept-alive connection, without a coroutine
  // (HttpConnection::start). The first run, redirects and TLS go through run().
  bool start(RunSink& sink, std::uint32_t tag) override {
    if (http_.follow_redirects != 0) return false;
    const auto* bytes = std::get_if<std::string>(&request_);
    if (!bytes) return false;
    started_at_ = std::chrono::system_clock::now();
    deadline_ = Clock::now() + spec_.timeout;
    sink_ = &sink;
    tag_ = tag;
    return conn_->start(*bytes, head_, deadline_, http_.max_body_bytes, *this);
  }
  // Runs inside an Asio handler, where nothing may escape: run() has the scheduler's try/catch
  // around it, this path has its own (judging must never take a handler down).
  void http_done(HttpResult&& res) override {
    std::optional<ProbeResult> r;
    try {
      r.emplace(judge(started_at_, deadline_, res, 0));
    } catch (const std::exception& ex) {
      r.emplace(internal_error(ex.what()));
    } catch (...) {
      r.emplace(internal_error("unknown"));
    }
    sink_->run_done(tag_, std::move(*r));
  }
  ProbeResult internal_error(const char* what) const {
    ProbeResult r = begin_result(service_, spec_.name);
    r.started_at = started_at_;
    r.outcome = Outcome::error;  // lastgood's fault, not the target's: the run could not judge
    r.reason = std::string("internal error: ") + what;
    return r;
  }

  // The request, following up to follow_redirects redirects.
  asio::awaitable<HttpResult> fetch_following(Clock::time_point deadline, int& redirects) {
    const Url& url = conn_->url();
    Url target = url;
    HttpConnection* conn = conn_.get();
    std::unique_ptr<HttpConnection> other;  // for a redirect to another origin
    HttpResult res;
    for (;;) {
      if (redirects == 0) {  // the configured URL: the bytes made at construction
        if (auto* bad = std::get_if<HttpError>(&request_)) res = *bad;
        else res = co_await conn->request(std::get<std::string>(request_), head_, deadline, http_.max_body_bytes);
      } else {
        res = co_await conn->request(make_request(target, target.origin() != url.origin()), deadline, http_.max_body_bytes);
      }
      auto* resp = std::get_if<HttpResponse>(&res);
      if (!resp || resp->status < 300 || resp->status > 399 || redirects >= http_.follow_redirects) break;
      auto loc = resp->header("Location");
      if (!loc) break;
      auto next = resolve_location(target, *loc);
      if (!next) break;
      if (target.tls() && !next->tls() && !http_.redirect_to_http) {  // a downgrade: what was sent encrypted would go in clear
        res = HttpError{HttpError::Stage::protocol, false,
                        "refused to follow a redirect from https:// to " + next->origin() + " (plain http; set redirect_to_http to allow it)"};
        break;
      }
      ++redirects;
      if (next->origin() != url.origin()) {
        other = std::make_unique<HttpConnection>(conn_->executor(), *next, next->tls() ? (tls_ ? tls_ : (http_.ca_file ? shared_tls_context({http_.ca_file, false}) : default_tls_context())) : nullptr);
        other->limit_by_budget();
        conn = other.get();
      } else {
        conn = conn_.get();
      }
      target = *next;
    }
    co_return res;
  }

  ProbeResult judge(std::chrono::system_clock::time_point started_at, Clock::time_point deadline, const HttpResult& res, int redirects) const {
    ProbeResult r = begin_result(service_, spec_.name);
    r.started_at = started_at;
    auto& details = r.http.emplace();
    details.connections_opened = conn_->connections_opened();
    details.redirects = redirects;

    if (auto* err = std::get_if<HttpError>(&res)) {
      r.timing.total = Clock::now() - (deadline - spec_.timeout);
      if (err->stage == HttpError::Stage::resolve || err->watcher) {
        r.outcome = Outcome::error;  // the watcher could not judge
        r.reason = err->message;
        r.failures.push_back({err->stage == HttpError::Stage::resolve ? "resolve" : "watcher", err->message});
        return r;
      }
      std::string cond = err->timeout ? "timeout" : err->stage_name();
      std::string why = err->message;
      if (err->timeout) why += " (timeout " + config::format_duration(spec_.timeout) + ")";
      r.failures.push_back({cond, why});
      finish_result(r);
      return r;
    }

    const auto& resp = std::get<HttpResponse>(res);
    r.http_status = resp.status;
    r.timing.connect = resp.connect_ms;
    r.timing.tls = resp.tls_ms;
    r.timing.first_byte = resp.first_byte_ms;
    r.timing.total = resp.total_ms;
    details.reused_connection = resp.reused_connection;
    details.body_bytes = resp.body.size();
    const auto& ex = http_.expect;

    bool status_ok = false;
    for (const auto& s : ex.status) status_ok = status_ok || s.contains(resp.status);
    if (!status_ok) r.failures.push_back({"status", "got " + std::to_string(resp.status) + ", expected " + status_list(ex.status)});
    if (ex.body_contains && resp.body.find(*ex.body_contains) == std::string::npos)
      r.failures.push_back({"body_contains", "body does not contain \"" + snippet(*ex.body_contains) + "\""});
    if (body_re_ && !RE2::PartialMatch(resp.body, *body_re_))
      r.failures.push_back({"body_matches", "body does not match /" + snippet(*ex.body_matches) + "/"});
    for (const auto& [name, want] : ex.header) {
      auto got = resp.header(name);
      if (!got) r.failures.push_back({"header", "header " + name + " is missing"});
      else if (*got != want) r.failures.push_back({"header", "header " + name + " is \"" + snippet(*got) + "\", expected \"" + snippet(want) + "\""});
    }
    if (!ex.json.empty()) {
      auto doc = nlohmann::json::parse(resp.body, nullptr, false);
      if (doc.is_discarded()) {
        r.failures.push_back({"json", "body is not JSON"});
      } else {
        for (const auto& [ptr, want] : ex.json) {
          nlohmann::json::json_pointer p(ptr);
          if (!doc.contains(p)) r.failures.push_back({"json", ptr + " is missing"});
          else if (doc.at(p) != want)
            r.failures.push_back({"json", ptr + " is " + snippet(doc.at(p).dump()) + ", expected " + snippet(want.dump())});
        }
      }
    }
    if (ex.max_latency && r.timing.total > *ex.max_latency)
      r.failures.push_back({"max_latency", "took " + fmt_ms(r.timing.total.count()) + ", max " + config::format_duration(*ex.max_latency)});
    if (resp.cert_not_after) {
      auto left = std::chrono::duration_cast<std::chrono::seconds>(*resp.cert_not_after - std::chrono::system_clock::now());
      details.cert_expires_in_s = left.count();
      if (ex.cert_valid_for && left < *ex.cert_valid_for) {
        auto days = left.count() / 86400.0;
        char buf[64];
        std::snprintf(buf, sizeof buf, "certificate expires in %.1f days", days);
        r.failures.push_back({"cert_valid_for", std::string(buf) + ", expected at least " + config::format_duration(*ex.cert_valid_for)});
      }
    }
    finish_result(r);
    return r;
  }

 private:
  // The URL and the executor are the connection's (conn_->url(), conn_->executor()): 10 000
  // probes, so each copy held here was a megabyte.
  std::string service_;
  const config::Probe& spec_;  // the immutable config outlives every probe made from it
  const HttpSpec& http_;  // inside spec_: one copy of the config per probe
  std::shared_ptr<asio::ssl::context> tls_;
  std::unique_ptr<RE2> body_re_;  // when body_matches is set: RE2, linear in the body
  std::unique_ptr<HttpConnection> conn_;
  std::variant<std::string, HttpError> request_;  // the configured request's bytes
  bool head_ = false;                              // ... for a HEAD: no body to read
  // The run in flight through start() (runs never overlap).
  RunSink* sink_ = nullptr;
  std::uint32_t tag_ = 0;
  std::chrono::system_clock::time_point started_at_{};
  Clock::time_point deadline_{};
};

}  // namespace

namespace {

using config::detail::Obj;
using config::detail::escape_token;
using config::detail::type_name;
using nlohmann::json;

std::shared_ptr<const config::KindSpec> parse(Obj& o) {
  auto h = std::make_shared<HttpSpec>();
  if (auto u = o.url("url", true, "an http:// or https:// URL with a host")) h->url = *u;
  if (auto m = o.one_of("method", {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})) h->method = *m;
  if (auto hs = o.string_map("headers")) {
    for (const auto& [k, v] : *hs) {
      const bool name_ok = !k.empty() && std::all_of(k.begin(), k.end(), [](unsigned char c) {
        return std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
      });
      if (!name_ok) o.ctx().error(o.at("headers") + "/" + escape_token(k), "expected an HTTP header name (letters, digits, -), found \"" + k + "\"");
      if (v.find_first_of(std::string("\r\n\0", 3)) != std::string::npos)
        o.ctx().error(o.at("headers") + "/" + escape_token(k), "expected a header value on one line (no CR, LF or NUL)");
    }
    h->headers = *hs;
  }
  if (auto b = o.str("body", false, true)) h->body = *b;
  if (auto f = o.integer("follow_redirects", 0, 10)) h->follow_redirects = static_cast<int>(*f);
  if (auto d = o.boolean("redirect_to_http")) h->redirect_to_http = *d;
  if (auto ca = o.str("ca_file")) h->ca_file = *ca;
  if (auto k = o.boolean("insecure_skip_verify")) h->insecure_skip_verify = *k;
  if (auto mb = o.integer("max_body_bytes", 1, 64LL * 1024 * 1024)) h->max_body_bytes = static_cast<size_t>(*mb);
  if (const json* e = o.get("expect")) {
    Obj x(o.ctx(), *e, o.at("expect"));
    if (const json* st = x.get("status")) {
      if (auto s = config::detail::parse_status(o.ctx(), x.at("status"), *st)) h->expect.status = *s;
    }
    if (auto s = x.str("body_contains")) h->expect.body_contains = *s;
    if (auto s = x.str("body_matches")) {
      // Matched against response bodies (network data) with RE2, in time linear in the body.
      RE2::Options opts;
      opts.set_log_errors(false);
      RE2 test(*s, opts);
      if (test.ok()) h->expect.body_matches = *s;
      else o.ctx().error(x.at("body_matches"), "expected a regular expression in RE2 syntax (no backreferences or lookaround): " + test.error());
    }
    if (auto hm = x.string_map("header")) h->expect.header = *hm;
    if (const json* js = x.get("json")) {
      if (!js->is_object()) {
        o.ctx().error(x.at("json"), std::string("expected an object mapping JSON pointers to values, found ") + type_name(*js));
      } else {
        for (auto& [k, v] : js->items()) {
          try {
            json::json_pointer p(k);
            (void)p;
            h->expect.json[k] = v;
          } catch (const json::exception&) {
            o.ctx().error(x.at("json") + "/" + escape_token(k), "expected a JSON pointer like \"/status\", found \"" + k + "\"");
          }
        }
      }
    }
    if (auto d = x.duration("max_latency", false, config::Duration{1})) h->expect.max_latency = *d;
    if (auto d = x.duration("cert_valid_for", false, config::Duration{1})) h->expect.cert_valid_for = *d;
  }
  if (auto u = parse_url(h->url)) {
    if (u->scheme != "https" && (h->expect.cert_valid_for || h->ca_file || h->insecure_skip_verify)) {
      o.ctx().error(o.at("url"), "TLS options (ca_file, insecure_skip_verify, expect.cert_valid_for) need an https:// URL");
    }
  }
  return h;
}

std::unique_ptr<Probe> make(asio::any_io_executor ex, const std::string& service, const config::Probe& spec) {
  return std::make_unique<HttpProbe>(std::move(ex), service, spec);
}

}  // namespace

const Kind http_kind{{"http", parse}, make};

}  // namespace lastgood::probes
