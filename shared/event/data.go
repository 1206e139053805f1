package event

import "time"

// Data of the events dnsctl and auth emit, here so that any service can
// read them without importing another service's package.

// DNSCutoverRequested asks dnsctl to switch a domain now (key: the domain).
const DNSCutoverRequested = "dns.cutover_requested"

// DNSSwitchedData is the data of dns.switched: every authoritative server
// serves the new records.
type DNSSwitchedData struct {
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

// DNSSkippedData is the data of dns.skipped.
type DNSSkippedData struct {
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

// DNSFailedData is the data of dns.failed.
type DNSFailedData struct {
	// Phase is plan, apply, verify or rollback.
	Phase  string `json:"phase"`
	Reason string `json:"reason"`
}

// DNSRolledBackData is the data of dns.rolled_back.
type DNSRolledBackData struct {
	Serial       uint32    `json:"serial"`
	RolledBackAt time.Time `json:"rolled_back_at"`
}

// MailboxProvisionedData is the data of mailbox.provisioned (key: the
// address).
type MailboxProvisionedData struct {
	Email    string `json:"email"`
	Domain   string `json:"domain"`
	Provider string `json:"provider"`
}

// DomainProvisionedData is the data of domain.provisioned (key: the
// domain): every imported mailbox of the domain exists at the target.
type DomainProvisionedData struct {
	Domain    string `json:"domain"`
	Mailboxes int    `json:"mailboxes"`
	Provider  string `json:"provider"`
}

// PasswordUpdatedData is the data of user.password.updated (key: the
// address). It carries no password and no hash.
type PasswordUpdatedData struct {
	Email    string `json:"email"`
	Role     string `json:"role"`
	Provider string `json:"provider"`
}
