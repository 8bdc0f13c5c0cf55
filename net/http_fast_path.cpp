// HttpConnection's fast path: a request on a kept-alive plain connection, as callbacks. A probe's
// steady state is one write, one read handler and the parse, with no coroutine frame (the
// coroutine path allocates a frame per awaited operation; the cost is measured in
// docs/benchmarks.md, round 4). Anything out of the ordinary (a partial write, a head or body
// longer than the first read, 1xx, chunked or close-delimited bodies, a connection found closed)
// is handed over to the coroutine path with the bytes so far.
#include "net/http_impl.hpp"

#include <boost/asio/co_spawn.hpp>

#include "net/supervise.hpp"

namespace lastgood::net {

namespace asio = boost::asio;
using Clock = HttpClock;
using Ms = HttpMs;

bool HttpConnection::Impl::start(const std::string& req, bool head, Clock::time_point deadline, std::size_t max_body,
                                 HttpConnection::Sink& sink) {
  if (!plain) return false;
  in_use();
  fast.sink = &sink;
  fast.req = &req;
  fast.head = head;
  fast.max_body = max_body;
  fast.deadline = deadline;
  fast.t0 = Clock::now();
  boost::system::error_code wec;
  const std::size_t sent = write_now(*plain, req, wec);
  if (wec) {  // nothing written: most likely the server closed the connection; request() reconnects
    close();
    hand_over(0, {});
  } else if (sent < req.size()) {
    hand_over(sent, {});
  } else {
    arm(deadline);
    fast.in.reserve(1024);
    read_more();
  }
  return true;
}

void HttpConnection::Impl::read_more() {
  const std::size_t used = grow(fast.in);
  plain->async_read_some(asio::buffer(fast.in.data() + used, fast.in.size() - used),
                         [this, used, alive = life.watch()](boost::system::error_code ec, std::size_t n) {
                           if (!alive.expired()) on_read(settle(fast.in, used, ec, n));
                         });
}

void HttpConnection::Impl::on_read(boost::system::error_code ec) {
  if (ec || timed_out) {
    if (stale(true, timed_out, fast.in.empty(), fast.deadline)) {
      close();
      hand_over(0, {});
      return;
    }
    return fail(head_read_error(ec));
  }
  const auto found = fast.in.find("\r\n\r\n");
  if (found == std::string::npos) {
    if (fast.in.size() > kHeaderLimit) return fail(malformed("header fields exceed 64 KiB"));
    return read_more();
  }
  const std::size_t head_end = found + 4;
  Head h;
  if (auto bad = parse_head(std::string_view(fast.in).substr(0, head_end), h)) return fail(malformed(*bad));
  const bool no_body = bodiless(h, fast.head);
  const bool complete = no_body || (h.content_length && (*h.content_length > fast.max_body || fast.in.size() >= head_end + *h.content_length));
  if ((h.status < 200 && h.status != 101) || !complete) return hand_over(fast.req->size(), std::move(fast.in));
  if (!no_body && *h.content_length > fast.max_body) return fail(body_too_big(fast.max_body));

  HttpResult result{std::in_place_type<HttpResponse>};
  auto& resp = std::get<HttpResponse>(result);
  resp.reused_connection = true;
  bool keep_alive = take_head(h, fast.t0, resp);
  const std::size_t body = no_body ? 0 : static_cast<std::size_t>(*h.content_length);
  if (fast.in.size() > head_end + body) keep_alive = false;  // bytes nobody asked for: do not reuse
  if (body) resp.body.assign(fast.in, head_end, body);
  disarm();
  resp.total_ms = Ms(Clock::now() - fast.t0);
  if (!keep_alive) close();
  else kept();
  deliver(std::move(result));
}

void HttpConnection::Impl::fail(HttpError err) {
  disarm();
  close();
  deliver(std::move(err));
}

void HttpConnection::Impl::deliver(HttpResult&& r) {
  std::string().swap(fast.in);  // the connection keeps no buffer between requests
  auto* sink = std::exchange(fast.sink, nullptr);
  sink->http_done(std::move(r));
}

void HttpConnection::Impl::hand_over(std::size_t sent, std::string in) {
  disarm();
  Exchange x;
  x.req = fast.req;
  x.head = fast.head;
  x.max_body = fast.max_body;
  x.t0 = fast.t0;
  x.sent = sent;
  x.in = std::move(in);
  spawn(ex, finish_handed_over(std::move(x)), "probe", life);
}

// The coroutine path's end of a request the fast path started. A throw is lastgood's bug, not the
// target's: the watcher's error, counted, and the sink still hears of the run.
asio::awaitable<void> HttpConnection::Impl::finish_handed_over(Exchange x) {
  const auto alive = life.watch();
  HttpResult r;
  try {
    r = co_await request(fast.deadline, std::move(x));
  } catch (const std::exception& e) {
    if (alive.expired()) co_return;  // cancelled with the connection
    note_internal_error("probe", e.what());
    r = HttpError{HttpError::Stage::protocol, false, std::string("internal error: ") + e.what(), true};
  }
  if (alive.expired()) co_return;
  deliver(std::move(r));
}

}  // namespace lastgood::net
