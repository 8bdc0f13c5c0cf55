#pragma once
// One request on a fresh connection, for what is visited seldom (registries, hosting APIs,
// notices); TLS verified against the system CA store.
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "net/http_types.hpp"

namespace lastgood::net {

boost::asio::awaitable<HttpResult> http_once(boost::asio::any_io_executor ex, std::string method, std::string url,
                                             std::vector<std::pair<std::string, std::string>> headers, std::string body,
                                             std::chrono::steady_clock::time_point deadline, std::size_t max_body);

}  // namespace lastgood::net
