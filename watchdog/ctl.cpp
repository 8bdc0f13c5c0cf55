#include "watchdog/ctl.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <optional>
#include <functional>
#include <set>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <nlohmann/json.hpp>

#include "config/secret.hpp"
#include "net/http_once.hpp"
#include "watchdog/json_text.hpp"

namespace lastgood::watchdog {

namespace {

using nlohmann::json;

constexpr const char* kCtlUsage = R"(usage: lastgood ctl [--url URL] [--token-file FILE] [-o table|json] COMMAND

commands:
  status                                   services: live and last good release, triggers, escalations, silences
  proposals                                rollbacks waiting for approval (and the last decided)
  approve ID [--comment C]                 approve a proposal (your approval counts once)
  reject ID [--comment C]                  reject a proposal
  rollback SERVICE --reason T [--to R] [--severity P0|P1|P2]
                                           ask for a rollback (default: to the last verified good release, P1)
  bad SERVICE RELEASE --reason T [--severity P]
                                           mark a release bad (never a target again; if live, a rollback is proposed)
  releases SERVICE                         the releases lastgood knows of SERVICE
  silence add SERVICE --for D --comment C  hold SERVICE's decisions for D (e.g. 2h)
  silence list                             silences and maintenance windows
  silence expire ID                        end a silence now
  clear SERVICE                            clear an escalation
  reload                                   read the config again (as SIGHUP)

options:
  --url URL           the lastgood to talk to (default $LASTGOOD_URL, else http://127.0.0.1:9464)
  --token-file FILE   your approver token (default $LASTGOOD_TOKEN)
  -o, --output FMT    table (default) or json

exit codes: 0 ok, 1 refused or unreachable (the server's reason is printed), 2 usage
)";

int usage(const std::string& msg) {
  std::fprintf(stderr, "lastgood ctl: %s\n(see lastgood ctl --help)\n", msg.c_str());
  return 2;
}

struct Reply {
  int status = 0;  // 0: no answer
  json body;
  std::string error;  // transport error
};

Reply request(const std::string& base, const std::string& method, const std::string& path, const std::string& token, const json* body) {
  boost::asio::io_context ioc;
  std::vector<std::pair<std::string, std::string>> headers;
  if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);
  std::string text;
  if (body) {
    headers.emplace_back("Content-Type", "application/json");
    text = body->dump();
  }
  auto fut = boost::asio::co_spawn(ioc,
                                   net::http_once(ioc.get_executor(), method, base + path, std::move(headers), std::move(text),
                                                  std::chrono::steady_clock::now() + std::chrono::seconds(15), 64 << 20),
                                   boost::asio::use_future);
  ioc.run();
  Reply r;
  try {
    auto res = fut.get();
    if (auto* e = std::get_if<net::HttpError>(&res)) {
      r.error = std::string("no answer from ") + base + " (" + e->stage_name() + (e->message.empty() ? "" : ": " + e->message) + ")";
      return r;
    }
    const auto& resp = std::get<net::HttpResponse>(res);
    r.status = resp.status;
    r.body = json::parse(resp.body, nullptr, false);
    if (r.body.is_discarded()) r.body = json(resp.body);
  } catch (const std::exception& ex) {
    r.error = std::string("no answer from ") + base + ": " + ex.what();
  }
  return r;
}

std::string when(const json& ms) {
  if (!ms.is_number()) return "-";
  const auto t = std::chrono::system_clock::time_point(std::chrono::milliseconds(ms.get<long long>()));
  const auto d = std::chrono::duration_cast<std::chrono::seconds>(t - std::chrono::system_clock::now()).count();
  const long long a = d < 0 ? -d : d;
  std::string span = a < 60 ? std::to_string(a) + "s" : a < 3600 ? std::to_string(a / 60) + "m" : a < 172800 ? std::to_string(a / 3600) + "h" : std::to_string(a / 86400) + "d";
  return d < 0 ? span + " ago" : "in " + span;
}

std::string str(const json& j, const char* key, const char* dflt = "-") {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return dflt;
  if (j[key].is_string()) return j[key].get<std::string>();
  return j[key].dump();
}

void table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w(head.size());
  for (size_t i = 0; i < head.size(); ++i) w[i] = head[i].size();
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], std::min<size_t>(r[i].size(), 60));
  auto line = [&](const std::vector<std::string>& r) {
    std::string out;
    for (size_t i = 0; i < r.size(); ++i) {
      std::string cell = r[i].size() > 60 ? r[i].substr(0, 57) + "..." : r[i];
      out += cell;
      if (i + 1 < r.size()) out += std::string(w[i] - cell.size() + 2, ' ');
    }
    std::puts(out.c_str());
  };
  line(head);
  for (const auto& r : rows) line(r);
}

std::string approvals_text(const json& p) {
  std::string names;
  if (p.contains("approvals") && p["approvals"].is_array())
    for (const auto& a : p["approvals"]) names += (names.empty() ? "" : ",") + str(a, "approver");
  return std::to_string(p.value("approvals", json::array()).size()) + "/" + str(p, "quorum") + (names.empty() ? "" : " (" + names + ")");
}

void print_proposals(const json& list) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : list) {
    const auto& d = p.value("decision", json::object());
    rows.push_back({str(p, "id"), str(d, "service"), str(p, "origin", "policy"), str(d, "severity"), str(d, "release_from") + " -> " + str(d, "release_to"),
                    str(p, "state"), approvals_text(p), when(p.value("expires_at", json())), str(d, "reason")});
  }
  table({"ID", "SERVICE", "ORIGIN", "SEV", "ROLLBACK", "STATE", "APPROVALS", "EXPIRES", "WHY"}, rows);
}

void print_status(const json& body) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& s : body.value("services", json::array())) {
    std::string state = "ok";
    std::string firing;
    for (const auto& t : s.value("triggers", json::array())) {
      if (t.value("state", "") == "firing") firing += (firing.empty() ? "" : ",") + str(t, "name");
    }
    if (!firing.empty()) state = "firing: " + firing;
    if (s.value("escalated", false)) state = "ESCALATED: " + str(s, "escalation");
    if (s.contains("silenced")) state += " (silenced until " + str(s["silenced"], "ends_at") + " by " + str(s["silenced"], "by") + ")";
    rows.push_back({str(s, "name"), str(s.value("live_release", json()), "id"), str(s.value("last_good_release", json()), "id"),
                    std::to_string(s.value("pending_proposals", json::array()).size()), state});
  }
  table({"SERVICE", "LIVE", "LAST_GOOD", "PENDING", "STATE"}, rows);
}

void print_releases(const json& body) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : body.value("releases", json::array())) {
    std::string note = r.value("live", false) ? "live" : "";
    if (r.value("last_good", false)) note += std::string(note.empty() ? "" : ", ") + "last good";
    if (r.contains("marked_bad_by")) note += std::string(note.empty() ? "" : ", ") + "bad: " + str(r, "marked_bad_by") + ": " + str(r, "marked_bad_reason");
    rows.push_back({str(r, "id"), str(r, "state"), when(r.value("first_seen", json())), when(r.value("verified_at", json())), note});
  }
  table({"RELEASE", "STATE", "FIRST_SEEN", "VERIFIED", "NOTE"}, rows);
}

void print_silences(const json& body) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& s : body.value("silences", json::array())) {
    std::string services;
    for (const auto& x : s.value("services", json::array())) services += (services.empty() ? "" : ",") + x.get<std::string>();
    rows.push_back({str(s, "id"), services, str(s, "state"), str(s, "starts_at"), str(s, "ends_at"), str(s, "by"), str(s, "comment")});
  }
  table({"ID", "SERVICES", "STATE", "STARTS", "ENDS", "BY", "COMMENT"}, rows);
}

}  // namespace

int run_ctl(const std::vector<std::string>& args) {
  std::string url = std::getenv("LASTGOOD_URL") && *std::getenv("LASTGOOD_URL") ? std::getenv("LASTGOOD_URL") : "http://127.0.0.1:9464";
  std::optional<std::string> token_file;
  std::string output = "table";
  std::map<std::string, std::string> opts;  // --comment, --reason, --to, --severity, --for
  std::vector<std::string> words;
  static const std::set<std::string> kValued = {"--comment", "--reason", "--to", "--severity", "--for"};
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& s = args[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= args.size()) return std::nullopt;
      return args[++i];
    };
    std::string key = s, inline_value;
    bool has_inline = false;
    if (s.rfind("--", 0) == 0 && s.find('=') != std::string::npos) {
      key = s.substr(0, s.find('='));
      inline_value = s.substr(s.find('=') + 1);
      has_inline = true;
    }
    auto take = [&]() -> std::optional<std::string> { return has_inline ? std::optional<std::string>(inline_value) : value(); };
    if (key == "--help" || key == "-h") {
      std::fputs(kCtlUsage, stdout);
      return 0;
    } else if (key == "--url") {
      auto x = take();
      if (!x) return usage("--url needs a URL");
      url = *x;
    } else if (key == "--token-file") {
      auto x = take();
      if (!x) return usage("--token-file needs a file");
      token_file = *x;
    } else if (key == "-o" || key == "--output") {
      auto x = take();
      if (!x || (*x != "json" && *x != "table")) return usage(key + " needs table or json");
      output = *x;
    } else if (kValued.count(key)) {
      auto x = take();
      if (!x) return usage(key + " needs a value");
      opts[key] = *x;
    } else if (!s.empty() && s[0] == '-' && s.size() > 1) {
      return usage("unknown option " + s);
    } else {
      words.push_back(s);
    }
  }
  while (!url.empty() && url.back() == '/') url.pop_back();
  if (words.empty()) {
    std::fputs(kCtlUsage, stderr);
    return 2;
  }
  std::string token;
  if (token_file) {
    auto secret = config::Secret::from_file(*token_file);
    if (auto err = secret.resolve()) return usage("--token-file: " + *err);
    token = secret.value();
  } else if (const char* t = std::getenv("LASTGOOD_TOKEN")) {
    token = t;
  }
  const std::string cmd = words[0];
  auto need = [&](size_t n, const char* shape) -> std::optional<int> {
    if (words.size() != n) return usage(std::string("usage: lastgood ctl ") + shape);
    return std::nullopt;
  };
  auto allowed = [&](std::initializer_list<const char*> keys) -> std::optional<int> {
    for (const auto& [k, v] : opts) {
      bool ok = false;
      for (const char* a : keys) ok = ok || k == a;
      if (!ok) return usage(k + " does not apply to " + cmd);
    }
    return std::nullopt;
  };
  auto needs_token = [&]() -> std::optional<int> {
    if (token.empty()) return usage(cmd + " needs your approver token: set LASTGOOD_TOKEN or give --token-file");
    return std::nullopt;
  };
  std::string method = "GET", path;
  std::optional<json> body;
  std::function<void(const json&)> show;
  if (cmd == "status") {
    if (auto e = need(1, "status")) return *e;
    if (auto e = allowed({})) return *e;
    path = "/api/v1/services";
    show = print_status;
  } else if (cmd == "proposals") {
    if (auto e = need(1, "proposals")) return *e;
    if (auto e = allowed({})) return *e;
    path = "/api/v1/proposals";
    show = [](const json& b) { print_proposals(b.value("proposals", json::array())); };
  } else if (cmd == "approve" || cmd == "reject") {
    if (auto e = need(2, "approve|reject ID [--comment C]")) return *e;
    if (auto e = allowed({"--comment"})) return *e;
    if (auto e = needs_token()) return *e;
    method = "POST";
    path = "/api/v1/proposals/" + words[1] + "/" + cmd;
    body = json::object();
    if (opts.count("--comment")) (*body)["comment"] = opts["--comment"];
    show = [](const json& b) { print_proposals(json::array({b})); };
  } else if (cmd == "rollback") {
    if (auto e = need(2, "rollback SERVICE --reason T [--to R] [--severity P]")) return *e;
    if (auto e = allowed({"--reason", "--to", "--severity"})) return *e;
    if (!opts.count("--reason")) return usage("rollback needs --reason (it goes to the ledger and the notices)");
    if (auto e = needs_token()) return *e;
    method = "POST";
    path = "/api/v1/services/" + words[1] + "/rollback";
    body = json{{"reason", opts["--reason"]}};
    if (opts.count("--to")) (*body)["to"] = opts["--to"];
    if (opts.count("--severity")) (*body)["severity"] = opts["--severity"];
    show = [](const json& b) { std::printf("proposal %s: %s (approvals %s/%s)%s\n", str(b, "proposal").c_str(), str(b, "state").c_str(), str(b, "approvals").c_str(), str(b, "quorum").c_str(), b.contains("note") ? ("; " + str(b, "note")).c_str() : ""); };
  } else if (cmd == "bad") {
    if (auto e = need(3, "bad SERVICE RELEASE --reason T [--severity P]")) return *e;
    if (auto e = allowed({"--reason", "--severity"})) return *e;
    if (!opts.count("--reason")) return usage("bad needs --reason");
    if (auto e = needs_token()) return *e;
    method = "POST";
    path = "/api/v1/services/" + words[1] + "/releases/" + words[2] + "/bad";
    body = json{{"reason", opts["--reason"]}};
    if (opts.count("--severity")) (*body)["severity"] = opts["--severity"];
    show = [](const json& b) {
      std::printf("%s %s marked bad by %s\n", str(b, "service").c_str(), str(b, "release").c_str(), str(b, "marked_bad_by").c_str());
      if (b.contains("proposal")) std::printf("proposal %s: %s\n", str(b, "proposal").c_str(), str(b, "state").c_str());
      if (b.contains("note")) std::printf("note: %s\n", str(b, "note").c_str());
    };
  } else if (cmd == "releases") {
    if (auto e = need(2, "releases SERVICE")) return *e;
    if (auto e = allowed({})) return *e;
    path = "/api/v1/services/" + words[1] + "/releases";
    show = print_releases;
  } else if (cmd == "silence") {
    const std::string sub = words.size() > 1 ? words[1] : "";
    if (sub == "add") {
      if (auto e = need(3, "silence add SERVICE --for D --comment C")) return *e;
      if (auto e = allowed({"--for", "--comment"})) return *e;
      if (!opts.count("--for") || !opts.count("--comment")) return usage("silence add needs --for D and --comment C");
      if (auto e = needs_token()) return *e;
      method = "POST";
      path = "/api/v1/silences";
      body = json{{"service", words[2]}, {"for", opts["--for"]}, {"comment", opts["--comment"]}};
      show = [](const json& b) { std::printf("silence %s until %s\n", str(b, "id").c_str(), str(b, "ends_at").c_str()); };
    } else if (sub == "list") {
      if (auto e = need(2, "silence list")) return *e;
      if (auto e = allowed({})) return *e;
      path = "/api/v1/silences";
      show = print_silences;
    } else if (sub == "expire") {
      if (auto e = need(3, "silence expire ID")) return *e;
      if (auto e = allowed({})) return *e;
      if (auto e = needs_token()) return *e;
      method = "DELETE";
      path = "/api/v1/silences/" + words[2];
      show = [](const json& b) { std::printf("silence %s expired by %s\n", str(b, "id").c_str(), str(b, "expired_by").c_str()); };
    } else {
      return usage("usage: lastgood ctl silence add|list|expire");
    }
  } else if (cmd == "clear") {
    if (auto e = need(2, "clear SERVICE")) return *e;
    if (auto e = allowed({})) return *e;
    if (auto e = needs_token()) return *e;
    method = "POST";
    path = "/api/v1/services/" + words[1] + "/clear";
    show = [](const json& b) { std::printf("%s cleared by %s\n", str(b, "service").c_str(), str(b, "cleared_by").c_str()); };
  } else if (cmd == "reload") {
    if (auto e = need(1, "reload")) return *e;
    if (auto e = allowed({})) return *e;
    if (auto e = needs_token()) return *e;
    method = "POST";
    path = "/-/reload";
    show = [](const json& b) { std::printf("reloaded: %s\n", json_text(b).c_str()); };
  } else {
    return usage("unknown command " + cmd);
  }
  const Reply r = request(url, method, path, token, body ? &*body : nullptr);
  if (r.status == 0) {
    std::fprintf(stderr, "lastgood ctl: %s\n", r.error.c_str());
    return 1;
  }
  if (r.status >= 300) {
    std::string why = r.body.is_object() && r.body.contains("error") ? str(r.body, "error") : r.body.dump();
    if (r.body.is_object() && r.body.contains("errors")) why += ": " + r.body["errors"].dump();
    std::fprintf(stderr, "lastgood ctl: %s %s: HTTP %d: %s\n", method.c_str(), path.c_str(), r.status, why.c_str());
    if (output == "json") std::puts(json_text(r.body, 2).c_str());
    return 1;
  }
  if (output == "json") std::puts(json_text(r.body, 2).c_str());
  else show(r.body);
  return 0;
}

}  // namespace lastgood::watchdog
