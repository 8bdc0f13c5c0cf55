#include "net/resolve.hpp"

#include <memory>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace lastgood::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

asio::awaitable<Resolved> resolve(asio::any_io_executor ex, const std::string& host, const std::string& port,
                                  std::chrono::steady_clock::time_point deadline) {
  auto resolver = std::make_shared<tcp::resolver>(ex);  // the timer's handler may outlive this frame
  asio::steady_timer timer(ex);
  timer.expires_at(deadline);
  timer.async_wait([resolver](boost::system::error_code ec) {
    if (!ec) resolver->cancel();
  });
  auto [ec, endpoints] = co_await resolver->async_resolve(host, port, asio::as_tuple(asio::use_awaitable));
  timer.cancel();
  Resolved out;
  if (!ec) {
    out.endpoints = std::move(endpoints);
    co_return out;
  }
  out.timeout = ec == asio::error::operation_aborted;
  out.error = out.timeout ? "resolving " + host + " timed out" : "resolving " + host + ": " + ec.message();
  co_return out;
}

}  // namespace lastgood::net
