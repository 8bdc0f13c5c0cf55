#pragma once
namespace lastgood::watchdog {
// The approval page served at GET /: HTML, CSS and JS in one document, no external assets.
extern const char* const kApprovalPage;
}
