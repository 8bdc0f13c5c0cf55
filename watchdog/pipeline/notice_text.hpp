#pragma once
// What a team notice says in words (Slack's text, the webhook's "text", PagerDuty's summary): one
// or two sentences from the notice's details, with the failing probe's own reason and the
// measured evidence in words, the names of the people who approved or rejected, never a JSON blob.
// Pure: no I/O, no clock.
#include <string>

#include <nlohmann/json.hpp>

namespace lastgood::watchdog {

// `event`: breach, proposed, approved, rejected, expired, stale, executed, failed, verified,
// escalated, reminder, cleared; `d`: the notice's details (trigger, severity, evidence,
// release_from, release_to, reason, error, proposal_id, approvers, by, ...).
std::string notice_text(const std::string& event, const std::string& service, const nlohmann::json& d);

// The evidence of a breach in words: "2 failures in a row on probe home (limit 2): status: got
// 500, expected 200-299".
std::string evidence_text(const nlohmann::json& evidence);

}  // namespace lastgood::watchdog
