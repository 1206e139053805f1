package dnsctl

import (
	"fmt"
	"time"
)

// CutoverRequested is the type of the event that asks the service to
// switch a domain now (`mailferry dns cutover`), whatever
// switch_on_provisioned says. Its key is the domain.
const CutoverRequested = "dns.cutover_requested"

// SwitchedData is the data of a dns.switched event: every authoritative
// server serves the new records.
type SwitchedData struct {
	Serial uint32 `json:"serial"`
	// OldTTL is the longest TTL the replaced mail records had, in seconds.
	OldTTL uint32 `json:"old_ttl"`
	// OldTTLExpiresAt is when no resolver can still send mail to the
	// legacy provider by the old records; a delta mail pass after it
	// finds everything that arrived there.
	OldTTLExpiresAt time.Time `json:"old_ttl_expires_at"`
	VerifiedAt      time.Time `json:"verified_at"`
	Servers         []string  `json:"servers"`
	PlanID          string    `json:"plan_id,omitempty"`
}

// SkippedData is the data of a dns.skipped event.
type SkippedData struct {
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

// FailedData is the data of a dns.failed event.
type FailedData struct {
	// Phase is plan, apply, verify or rollback.
	Phase  string `json:"phase"`
	Reason string `json:"reason"`
}

// RolledBackData is the data of a dns.rolled_back event.
type RolledBackData struct {
	Serial       uint32    `json:"serial"`
	RolledBackAt time.Time `json:"rolled_back_at"`
}

// eventID makes an id that repeats when the same fact is published again.
func eventID(typ, domain string, parts ...any) string {
	id := typ + ":" + trimDot(domain)
	for _, p := range parts {
		id += ":" + fmt.Sprint(p)
	}
	return id
}
