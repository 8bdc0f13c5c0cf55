#include "net/http_once.hpp"

#include "net/http_client.hpp"

namespace lastgood::net {

boost::asio::awaitable<HttpResult> http_once(boost::asio::any_io_executor ex, std::string method, std::string url,
                                             std::vector<std::pair<std::string, std::string>> headers, std::string body,
                                             std::chrono::steady_clock::time_point deadline, std::size_t max_body) {
  auto u = parse_url(url);
  if (!u) co_return HttpError{HttpError::Stage::protocol, false, "not a URL: " + url};
  HttpConnection conn(ex, *u, u->tls() ? default_tls_context() : nullptr);
  HttpRequest req;
  req.method = std::move(method);
  req.target = u->target;
  req.headers = std::move(headers);
  req.body = std::move(body);
  co_return co_await conn.request(std::move(req), deadline, max_body);
}

}  // namespace lastgood::net
