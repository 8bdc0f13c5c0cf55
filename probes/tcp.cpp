#include "probes/tcp.hpp"

#include <re2/re2.h>

#include "config/reader.hpp"
#include "net/errors.hpp"

#include "net/resolve.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>

namespace lastgood::probes {

using net::resolve;
using net::Resolved;

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {

class TcpProbe final : public Probe {
 public:
  TcpProbe(asio::any_io_executor ex, std::string service, const config::Probe& spec)
      : ex_(std::move(ex)), service_(std::move(service)), spec_(spec), tcp_(config::spec_as<TcpSpec>(spec.spec)) {}

  const config::Probe& spec() const override { return spec_; }

  asio::awaitable<ProbeResult> run() override {
    ProbeResult r = begin_result(service_, spec_.name);
    const auto t0 = Clock::now();
    const auto deadline = t0 + spec_.timeout;

    Resolved resolved = co_await resolve(ex_, tcp_.host, tcp_.port, deadline);
    if (resolved.error) {
      r.outcome = Outcome::error;  // the watcher could not judge
      r.reason = *resolved.error;
      r.failures.push_back({"resolve", r.reason});
      r.timing.total = Clock::now() - t0;
      co_return r;
    }
    beast::tcp_stream stream(ex_);
    stream.expires_at(deadline);
    // Each endpoint's socket is opened here, not inside the connect: out of descriptors, the open
    // fails with EMFILE, which a range connect reported as "Operation canceled", a `fail`.
    boost::system::error_code cec = asio::error::host_not_found;
    for (const auto& entry : resolved.endpoints) {
      boost::system::error_code ignored;
      stream.socket().close(ignored);
      stream.socket().open(entry.endpoint().protocol(), cec);
      if (cec) {
        if (net::watcher_side(cec)) break;
        continue;
      }
      std::tie(cec) = co_await stream.async_connect(entry.endpoint(), use_tuple);
      if (!cec || cec == beast::error::timeout) break;
    }
    if (cec && net::watcher_side(cec)) {
      r.outcome = Outcome::error;  // lastgood's own limit (EMFILE, ENOBUFS, ...), not the target's
      r.reason = "lastgood could not open a connection (" + cec.message() + "): its own limit, not the target's";
      r.failures.push_back({"watcher", r.reason});
      r.timing.total = Clock::now() - t0;
      co_return r;
    }
    if (cec) {
      r.failures.push_back({cec == beast::error::timeout ? "timeout" : "connect",
                            cec == beast::error::timeout ? "connect timed out (timeout " + config::format_duration(spec_.timeout) + ")"
                                                         : "connect: " + cec.message()});
      r.timing.total = Clock::now() - t0;
      finish_result(r);
      co_return r;
    }
    r.timing.connect = Clock::now() - t0;
    if (tcp_.send) {
      auto [wec, n] = co_await asio::async_write(stream, asio::buffer(*tcp_.send), use_tuple);
      (void)n;
      if (wec) r.failures.push_back({"write", "send: " + wec.message()});
    }
    if (r.failures.empty() && tcp_.expect_reply_prefix) {
      const auto& want = *tcp_.expect_reply_prefix;
      std::string got(want.size(), '\0');
      auto [rec2, n] = co_await asio::async_read(stream, asio::buffer(got), use_tuple);
      got.resize(n);
      r.timing.first_byte = Clock::now() - t0;
      if (rec2 == beast::error::timeout) r.failures.push_back({"timeout", "no reply within " + config::format_duration(spec_.timeout)});
      else if (got != want) {
        std::string shown;
        for (char c : got) shown += (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) ? '.' : c;
        r.failures.push_back({"reply_prefix", "reply starts with \"" + shown + "\", expected \"" + want + "\"" +
                                                  (rec2 ? " (" + rec2.message() + ")" : "")});
      }
    }
    r.timing.total = Clock::now() - t0;
    if (tcp_.max_latency && r.timing.total > *tcp_.max_latency)
      r.failures.push_back({"max_latency", "took " + std::to_string(static_cast<long>(r.timing.total.count())) + "ms, max " +
                                               config::format_duration(*tcp_.max_latency)});
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    finish_result(r);
    co_return r;
  }

 private:
  asio::any_io_executor ex_;
  std::string service_;
  const config::Probe& spec_;  // the immutable config outlives every probe made from it
  const TcpSpec& tcp_;  // inside spec_
};

}  // namespace

namespace {

using config::detail::Obj;
using nlohmann::json;

std::shared_ptr<const config::KindSpec> parse(Obj& o) {
  auto t = std::make_shared<TcpSpec>();
  if (auto a = o.str("address", true)) {
    static const RE2 re(R"((\[[0-9a-fA-F:.]+\]|[^\s:\[\]]+):(\d{1,5}))");
    std::string host, port;
    if (!RE2::FullMatch(*a, re, &host, &port) || std::stoi(port) < 1 || std::stoi(port) > 65535) {
      o.ctx().error(o.at("address"), "expected \"host:port\" (e.g. \"127.0.0.1:5432\"), found \"" + *a + "\"");
    } else {
      t->host = host;
      if (t->host.front() == '[') t->host = t->host.substr(1, t->host.size() - 2);
      t->port = port;
    }
  }
  if (auto s = o.str("send", false, true)) t->send = *s;
  if (const json* e = o.get("expect")) {
    Obj x(o.ctx(), *e, o.at("expect"));
    if (auto p = x.str("reply_prefix")) t->expect_reply_prefix = *p;
    if (auto d = x.duration("max_latency", false, config::Duration{1})) t->max_latency = *d;
  }
  return t;
}

std::unique_ptr<Probe> make(asio::any_io_executor ex, const std::string& service, const config::Probe& spec) {
  return std::make_unique<TcpProbe>(std::move(ex), service, spec);
}

}  // namespace

const Kind tcp_kind{{"tcp", parse}, make};

}  // namespace lastgood::probes
