#pragma once
// A watch on etcd (POST /v3/watch through the JSON gateway): one HTTP response that never ends,
// a chunked stream of JSON messages, one per line ({"result": {...}}). The first says the watch
// was created; each later one carries events, or says the watch was canceled (for instance
// because its start revision was compacted: then re-read and watch again).
//
// Every read has a deadline; routine errors are values. One watch per object; not restartable
// (make a new one).
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "watchdog/ha/etcd.hpp"

namespace lastgood::watchdog::ha {

struct WatchEvent {
  enum class Type { put, del };
  Type type = Type::put;
  KeyValue kv;
};

struct WatchBatch {
  std::int64_t revision = 0;
  std::vector<WatchEvent> events;
  bool canceled = false;
  std::int64_t compact_revision = 0;  // set when canceled because the start revision was compacted
  std::string cancel_reason;
};

class EtcdWatch {
 public:
  // `endpoint`: one plain http:// etcd client URL; `token`: etcd's auth token for it, if any.
  EtcdWatch(boost::asio::any_io_executor ex, std::string endpoint, std::string token = "");
  ~EtcdWatch();
  EtcdWatch(const EtcdWatch&) = delete;
  EtcdWatch& operator=(const EtcdWatch&) = delete;

  // Opens the stream for `key` (every key under it with `prefix`) from `start_revision` (0: from
  // now) and waits for etcd to confirm it.
  boost::asio::awaitable<EtcdResult<bool>> start(std::string key, bool prefix, std::int64_t start_revision,
                                                  std::chrono::steady_clock::time_point deadline);
  // The next message with events, or the cancellation. A deadline passing is an error with
  // unavailable = true and the stream closed.
  boost::asio::awaitable<EtcdResult<WatchBatch>> next(std::chrono::steady_clock::time_point deadline);
  void close();

  // Exposed for unit tests: one message of the stream.
  static EtcdResult<WatchBatch> parse_message(const nlohmann::json& message);

 private:
  boost::asio::awaitable<EtcdResult<nlohmann::json>> next_message(std::chrono::steady_clock::time_point deadline);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lastgood::watchdog::ha
