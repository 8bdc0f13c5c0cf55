// What team notices say in words: sentences with the probe's own reason and the evidence in words,
// who approved or rejected, the releases; never a JSON blob.
#include <catch2/catch.hpp>

#include "watchdog/pipeline/notice_text.hpp"

using lastgood::watchdog::evidence_text;
using lastgood::watchdog::notice_text;
using nlohmann::json;

TEST_CASE("notice text: evidence in words, with the probe's own reason", "[notice_text]") {
  CHECK(evidence_text({{"measure", "consecutive_failures"}, {"value", 3}, {"threshold", 3}, {"probe", "home"}, {"detail", "status: got 502, expected 200-299"}}) ==
        "3 failures in a row on probe home (limit 3): status: got 502, expected 200-299");
  CHECK(evidence_text({{"measure", "error_rate"}, {"value", 0.125}, {"threshold", 0.05}, {"samples", 40}, {"window_ms", 300000}, {"probe", "api"}}) ==
        "12.5% of 40 checks failed over 5m on probe api (limit 5%)");
  CHECK(evidence_text({{"measure", "p95_latency_ms"}, {"value", 1234.5}, {"threshold", 800}, {"window_ms", 60000}}) ==
        "p95 latency 1.23e+03 ms over 1m (limit 800 ms)");
  CHECK(evidence_text({{"measure", "failures_of_last_10"}, {"value", 4}, {"threshold", 3}}) == "4 of the last 10 checks failed (limit 3)");
  CHECK(evidence_text({{"measure", "burn_rate"}, {"value", 14.4}, {"threshold", 14.4}}) == "the error budget is burning 14.4x as fast as it may (limit 14.4x)");
  CHECK(evidence_text({{"measure", "condition_failed:cert_valid_for"}, {"probe", "tls"}, {"detail", "certificate expires in 3 days"}}) ==
        "the condition cert_valid_for failed on probe tls: certificate expires in 3 days");
  CHECK(evidence_text(json()) == "");
  CHECK(evidence_text({{"measure", 7}}) == "");  // a malformed value is left out, never thrown
}

TEST_CASE("notice text: each event is a sentence people can act on", "[notice_text]") {
  const json ev{{"measure", "consecutive_failures"}, {"value", 2}, {"threshold", 2}, {"probe", "home"}, {"detail", "body does not contain \"<title>\""}};
  CHECK(notice_text("breach", "web", {{"trigger", "down"}, {"severity", "P0"}, {"evidence", ev}}) ==
        "web is failing (trigger down, P0): 2 failures in a row on probe home (limit 2): body does not contain \"<title>\".");
  const std::string proposed = notice_text("proposed", "web", {{"trigger", "down"}, {"severity", "P1"}, {"release_from", "v2"}, {"release_to", "v1"},
                                                               {"proposal_id", "p17"}, {"reason", "policy asks for approval"}, {"evidence", ev}});
  CHECK(proposed == "A rollback of web from v2 to v1 awaits approval (trigger down, P1) (proposal p17): policy asks for approval. Evidence: 2 failures in a "
                    "row on probe home (limit 2): body does not contain \"<title>\".");
  CHECK_THAT(proposed, !Catch::Contains("{"));
  CHECK(notice_text("approved", "web", {{"proposal_id", "p17"}, {"approvers", {"alice", "bob"}}}) ==
        "The rollback of web was approved by alice and bob (proposal p17); it runs now.");
  CHECK(notice_text("rejected", "web", {{"proposal_id", "p17"}, {"by", "carol"}}) == "The rollback of web was rejected by carol (proposal p17): nothing will be done.");
  CHECK(notice_text("executed", "web", {{"trigger", "down"}, {"severity", "P0"}, {"release_from", "v2"}, {"release_to", "v1"}}) ==
        "web was rolled back from v2 to v1 (trigger down, P0); checking that it recovers.");
  CHECK(notice_text("failed", "web", {{"release_from", "v2"}, {"release_to", "v1"}, {"error", "ssh: connection refused"}}) ==
        "The rollback of web from v2 to v1 failed: ssh: connection refused. No automatic action until a person clears it.");
  CHECK(notice_text("verified", "web", {{"release_to", "v1"}, {"reason", "recovered: 3 healthy results in a row"}}) ==
        "web recovered on v1: recovered: 3 healthy results in a row.");
  CHECK(notice_text("escalated", "web", {{"reason", "not recovered in time"}}) ==
        "web is escalated: not recovered in time. No automatic action until a person clears it.");
  CHECK(notice_text("expired", "web", {{"proposal_id", "p17"}}) == "The rollback of web was not approved in time (proposal p17): nothing was done.");
  CHECK(notice_text("cleared", "web", {{"reason", "escalation cleared by alice"}}) == "web: escalation cleared by alice.");
  CHECK(notice_text("reminder", "web", {{"proposal_id", "p17"}}) == "Reminder: a rollback of web still awaits approval (proposal p17).");
}
