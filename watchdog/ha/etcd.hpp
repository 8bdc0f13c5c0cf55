#pragma once
// A client of etcd 3.4's JSON gateway (/v3/...; ha.md, "etcd protocol"): leases, ranges and
// transactions, over lastgood's own HTTP client. No gRPC. Keys and values travel base64-encoded
// and int64s as strings; fields with default values are omitted (a failed transaction has no
// "succeeded", a keepalive on a lost lease no "TTL").
//
// Every call has a deadline and runs against one endpoint at a time: an endpoint that cannot be
// reached, or answers 5xx, is left for the next one in turn, until the call's deadline. Routine
// errors are values (EtcdError), never exceptions.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <nlohmann/json.hpp>

namespace lastgood::watchdog::ha {

struct EtcdOptions {
  std::vector<std::string> endpoints;  // "http://127.0.0.1:2379", ...
  std::chrono::milliseconds call_timeout{2'000};
  std::shared_ptr<boost::asio::ssl::context> tls = nullptr;  // for https:// endpoints (CA, client certificate)
  // After every call: the operation (grant, keepalive, revoke, range, txn) and its outcome (ok,
  // refused, unavailable), for lastgood_ha_etcd_requests_total.
  std::function<void(const std::string& op, const char* outcome)> on_request = nullptr;
  // etcd's user/password auth (ha.auth): a token is asked for per endpoint (etcd's simple tokens
  // are each member's own) with /v3/auth/authenticate, sent as `Authorization`, and asked for
  // again when etcd says it is no longer valid. The password is read at each authentication
  // (a rotated file is picked up) and never appears in an error or a log.
  std::string user = "";
  std::function<std::optional<std::string>()> password = nullptr;
};

struct EtcdError {
  std::string message;
  // No endpoint gave an answer within the deadline (unreachable, no quorum, 5xx): the cluster
  // could not be asked. Otherwise etcd answered and refused (4xx, or a malformed answer).
  bool unavailable = true;
};

template <typename T>
using EtcdResult = std::variant<T, EtcdError>;

struct KeyValue {
  std::string key, value;
  std::int64_t create_revision = 0, mod_revision = 0, version = 0, lease = 0;
};

struct RangeResult {
  std::int64_t revision = 0;  // the store's revision when read
  std::vector<KeyValue> kvs;
};

// One comparison of a transaction: `target` of `key` compared with a number (create, mod,
// version, lease) or a value.
struct Compare {
  enum class Target { create, mod, version, lease, value };
  enum class Result { equal, greater, less, not_equal };
  std::string key;
  Target target = Target::create;
  Result result = Result::equal;
  std::int64_t number = 0;
  std::string value;
};

// One operation of a transaction.
struct Op {
  enum class Kind { put, del, range };
  Kind kind = Kind::range;
  std::string key, value;
  std::int64_t lease = 0;  // put: attach to this lease (0: none)
  bool prefix = false;     // del, range: every key starting with `key`
  static Op put(std::string k, std::string v, std::int64_t lease = 0) { return {Kind::put, std::move(k), std::move(v), lease, false}; }
  static Op del(std::string k, bool prefix = false) { return {Kind::del, std::move(k), {}, 0, prefix}; }
  static Op range(std::string k, bool prefix = false) { return {Kind::range, std::move(k), {}, 0, prefix}; }
};

struct Txn {
  std::vector<Compare> compare;
  std::vector<Op> success, failure;
};

struct TxnResult {
  bool succeeded = false;
  std::int64_t revision = 0;                // the transaction's revision (a put's: the new one)
  std::vector<std::vector<KeyValue>> ranges;  // the kvs of each range op that ran, in order
};

struct LeaseGrant {
  std::int64_t id = 0;
  std::int64_t ttl = 0;  // seconds, as etcd granted it
};

class EtcdClient {
 public:
  EtcdClient(boost::asio::any_io_executor ex, EtcdOptions options);
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  boost::asio::awaitable<EtcdResult<LeaseGrant>> grant(std::chrono::seconds ttl);
  // The lease's remaining TTL in seconds, or nullopt when the lease is gone (expired or revoked).
  boost::asio::awaitable<EtcdResult<std::optional<std::int64_t>>> keepalive(std::int64_t lease);
  boost::asio::awaitable<EtcdResult<bool>> revoke(std::int64_t lease);
  boost::asio::awaitable<EtcdResult<RangeResult>> range(const std::string& key, bool prefix = false);
  boost::asio::awaitable<EtcdResult<TxnResult>> txn(const Txn& t);

  boost::asio::any_io_executor executor() const;
  // The endpoint the next call goes to first (the last one that answered).
  const std::string& endpoint() const;
  // The auth token of that endpoint ("" without auth, or before one was given), for a watch.
  std::string token() const;

  // The JSON forms, exposed for unit tests (no sockets).
  static nlohmann::json txn_json(const Txn& t);
  static EtcdResult<TxnResult> parse_txn(const nlohmann::json& answer);
  static EtcdResult<RangeResult> parse_range(const nlohmann::json& answer);

 private:
  boost::asio::awaitable<EtcdResult<nlohmann::json>> call(const char* path, nlohmann::json body);
  boost::asio::awaitable<EtcdResult<nlohmann::json>> call_endpoints(const char* path, nlohmann::json body);
  // A token from endpoint i; an error that says why not (never with the password).
  boost::asio::awaitable<std::optional<EtcdError>> authenticate(std::size_t i, std::chrono::steady_clock::time_point deadline);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// An int64 as the gateway sends it: a string (or, from some versions, a number); nullopt for
// anything else.
std::optional<std::int64_t> int64_value(const nlohmann::json& v);

std::string base64(const std::string& raw);
std::optional<std::string> unbase64(const std::string& text);
// The end of a key prefix for a range: `prefix` with its last byte increased ("\0" for all keys).
std::string prefix_end(const std::string& prefix);

}  // namespace lastgood::watchdog::ha
