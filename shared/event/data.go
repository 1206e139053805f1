package event

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mailferry/mailferry/shared/record"
)

// The data of every event and the constructor of each, which alone makes
// its dedup id. The JSON names are the wire format already in streams:
// rename none. An id repeats exactly when the fact repeats (a retried
// publish, a job redelivered after it published), so the broker drops the
// repeat; what tells two distinct facts of one kind apart is in the id.

// Phases of a mailbox job, in the Phase of FailedData and SupersededData.
const (
	PhaseExtracting = "extracting"
	PhaseLoading    = "loading"
)

// QueuedData is the data of mailbox.queued (key: the mailbox): a pass
// over the mailbox was put on the jobs stream.
type QueuedData struct {
	Pass string `json:"pass"`
}

// Queued is the event that mailbox was queued in pass; one per mailbox
// and pass.
func Queued(mailbox, pass string) Outgoing {
	return Outgoing{Type: MailboxQueued, Key: mailbox, ID: "queued." + mailbox + "." + pass, Data: QueuedData{Pass: pass}}
}

// ExtractingData is the data of mailbox.extracting (key: the mailbox):
// an extractor took the pass's job.
type ExtractingData struct {
	Pass string `json:"pass"`
}

// Extracting is the event that the extractor began pass over mailbox;
// one per mailbox and pass, however often the job is redelivered.
func Extracting(mailbox, pass string) Outgoing {
	return Outgoing{Type: MailboxExtracting, Key: mailbox, ID: "extracting." + mailbox + "." + pass, Data: ExtractingData{Pass: pass}}
}

// ExtractedData is the data of mailbox.extracted (key: the mailbox): the
// pass's end record, the manifest the extractor also wrote to the mail
// stream (its Messages is the number of messages the pass holds). It is
// the record type itself so that the two can never differ.
type ExtractedData = record.End

// Extracted is the event that the extractor finished pass end.Pass over
// mailbox; one per mailbox and pass.
func Extracted(mailbox string, end *ExtractedData) Outgoing {
	return Outgoing{Type: MailboxExtracted, Key: mailbox, ID: "extracted." + mailbox + "." + end.Pass, Data: end}
}

// LoadedData is the data of mailbox.loaded (key: the mailbox): the
// loader appended everything of the pass the target lacked.
type LoadedData struct {
	Pass       string `json:"pass"`
	Appended   int64  `json:"appended"`
	Skipped    int64  `json:"skipped"`
	Dead       int64  `json:"dead"`
	Bytes      int64  `json:"bytes"`
	TargetUser string `json:"target_user"`
}

// Loaded is the event that the loader finished pass d.Pass of mailbox;
// one per mailbox and pass.
func Loaded(mailbox string, d LoadedData) Outgoing {
	return Outgoing{Type: MailboxLoaded, Key: mailbox, ID: "loaded." + mailbox + "." + d.Pass, Data: d}
}

// VerifiedData is the data of mailbox.verified (key: the mailbox): the
// mailbox was checked against the source, and the target holds every
// message of it unless Differences says otherwise.
type VerifiedData struct {
	// Pass is the pass the mailbox was last queued in when verified.
	Pass     string `json:"pass"`
	Messages int64  `json:"messages"`
	// Digest identifies the verification's result (what was compared
	// and found equal); empty in events written before it existed.
	Digest string `json:"digest,omitempty"`
	// Differences counts what the verification found different
	// (missing, extra, altered, flags, date); 0 means the target holds
	// the mailbox. Events written before it existed were written only
	// for mailboxes found equal, so its absence means 0.
	Differences int64 `json:"differences,omitempty"`
	// Missing counts the source's messages the target lacks, among
	// the Differences.
	Missing int64 `json:"missing,omitempty"`
}

// OK reports whether the verification found the target to hold the
// mailbox.
func (d VerifiedData) OK() bool { return d.Differences == 0 }

// Verified is the event that mailbox verified in pass d.Pass. Its id ends
// in d.Digest, not in a run id: running the same verification twice over
// unchanged mailboxes states the same fact, which the broker keeps once,
// while a verification that found something else (a re-verify after a fix,
// after new mail arrived) has another digest and is recorded too.
func Verified(mailbox string, d VerifiedData) Outgoing {
	return Outgoing{Type: MailboxVerified, Key: mailbox, ID: "verified." + mailbox + "." + d.Pass + "." + d.Digest, Data: d}
}

// FailedData is the data of mailbox.failed (key: the mailbox).
type FailedData struct {
	Pass string `json:"pass"`
	// Phase is PhaseExtracting or PhaseLoading.
	Phase  string `json:"phase"`
	Reason string `json:"reason"`
	// Retried says the job goes back to the queue; false means this
	// pass's job failed for good, which loaders waiting for the
	// extractor's records and the operator's tools wait on.
	Retried bool `json:"retried"`
	// WaitingForUser says the mailbox failed because the source has no
	// password for it until its user signs in on the change page
	// (shared/sourcecred.ErrWaiting): no login was tried, and a pass
	// queued after the sign-in copies it.
	WaitingForUser bool `json:"waiting_for_user,omitempty"`
}

// Failed is the event that the job of pass d.Pass over mailbox failed in
// d.Phase at its delivery number attempt; one per delivery, since every
// delivery's failure is its own fact.
func Failed(mailbox string, attempt uint64, d FailedData) Outgoing {
	return Outgoing{Type: MailboxFailed, Key: mailbox,
		ID: "failed." + d.Phase + "." + mailbox + "." + d.Pass + "." + strconv.FormatUint(attempt, 10), Data: d}
}

// SupersededData is the data of mailbox.superseded: a service dropped its
// job for Pass because the newer pass By will do the work.
type SupersededData struct {
	Pass  string `json:"pass"`
	By    string `json:"by"`
	Phase string `json:"phase"`
}

// Superseded is the event that d.Phase's job of pass d.Pass over mailbox
// gave way to d.By; one per mailbox, pass and phase.
func Superseded(mailbox string, d SupersededData) Outgoing {
	return Outgoing{Type: MailboxSuperseded, Key: mailbox, ID: "superseded." + d.Phase + "." + mailbox + "." + d.Pass, Data: d}
}

// RenamedData is the data of folder.renamed (key: the mailbox): a source
// folder got another name at the target.
type RenamedData struct {
	Source string `json:"source"`
	Target string `json:"target"`
	Reason string `json:"reason"`
}

// Renamed is the event that mailbox's folder d.Source was mapped to
// d.Target; one per mailbox and source folder (a folder keeps its mapping
// across passes).
func Renamed(mailbox string, d RenamedData) Outgoing {
	return Outgoing{Type: FolderRenamed, Key: mailbox, ID: "renamed." + mailbox + "." + d.Source, Data: d}
}

// DeadLetteredData is a message the target refused for good,
// self-explaining: who, what, the server's exact answer, when. It is the
// data of message.dead_lettered (key: the mailbox) and the record of the
// dead-letter stream; the original record stays in the mail stream
// (StreamSeq) for a retry.
type DeadLetteredData struct {
	ID           string    `json:"id"`
	Mailbox      string    `json:"mailbox"`
	TargetUser   string    `json:"target_user"`
	Folder       string    `json:"folder"`
	TargetFolder string    `json:"target_folder"`
	UIDValidity  uint32    `json:"uidvalidity"`
	Epoch        uint32    `json:"epoch,omitempty"` // the folder's numbering (record.Folder.Epoch)
	UID          uint32    `json:"uid"`
	Size         int64     `json:"size"`
	SHA256       string    `json:"sha256"`
	StreamSeq    uint64    `json:"stream_seq"`
	Response     string    `json:"response"`
	Code         string    `json:"code,omitempty"`
	Reason       string    `json:"reason"`
	Time         time.Time `json:"time"`
}

// DeadLettered is the event that message d.ID of mailbox was
// dead-lettered; one per message.
func DeadLettered(mailbox string, d DeadLetteredData) Outgoing {
	return Outgoing{Type: MessageDeadLettered, Key: mailbox, ID: "dead." + d.ID, Data: d}
}

// AlteredData is the data of message.altered (key: the mailbox): the
// target accepted a message but stores it with other bytes. The loader's
// ledger mapping item for it holds the same two hashes.
type AlteredData struct {
	ID           string `json:"id"`
	Folder       string `json:"folder"`
	TargetFolder string `json:"target_folder"`
	UID          uint32 `json:"uid"`
	TargetUID    uint32 `json:"target_uid"`
	Size         int64  `json:"size"`
	StoredSize   int64  `json:"stored_size"`
	SHA256       string `json:"sha256"`
	StoredSHA256 string `json:"stored_sha256"`
	// Risks names what in the message servers are known to rewrite
	// ("nul", "line-endings", "8bit-header"), as seen when it was sent.
	Risks string `json:"risks,omitempty"`
}

// Altered is the event that the target altered message d.ID of mailbox;
// one per message.
func Altered(mailbox string, d AlteredData) Outgoing {
	return Outgoing{Type: MessageAltered, Key: mailbox, ID: "altered." + d.ID, Data: d}
}

// MailboxProvisionedData is the data of mailbox.provisioned (key: the
// address).
type MailboxProvisionedData struct {
	Email    string `json:"email"`
	Domain   string `json:"domain"`
	Provider string `json:"provider"`
}

// ProvisionedMailbox is the event that d.Email exists at the target; one
// per address.
func ProvisionedMailbox(d MailboxProvisionedData) Outgoing {
	return Outgoing{Type: MailboxProvisioned, Key: d.Email, ID: MailboxProvisioned + ":" + d.Email, Data: d}
}

// DomainProvisionedData is the data of domain.provisioned (key: the
// domain): every imported mailbox of the domain exists at the target.
type DomainProvisionedData struct {
	Domain    string `json:"domain"`
	Mailboxes int    `json:"mailboxes"`
	Provider  string `json:"provider"`
}

// ProvisionedDomain is the event that every mailbox of d.Domain exists at
// the target; one per domain.
func ProvisionedDomain(d DomainProvisionedData) Outgoing {
	return Outgoing{Type: DomainProvisioned, Key: d.Domain, ID: DomainProvisioned + ":" + d.Domain, Data: d}
}

// PasswordUpdatedData is the data of user.password.updated (key: the
// address). It carries no password and no hash.
type PasswordUpdatedData struct {
	Email    string `json:"email"`
	Role     string `json:"role"`
	Provider string `json:"provider"`
}

// PasswordUpdated is the event that d.Email's password was changed at
// at (the time stored with the new hash); one per change.
func PasswordUpdated(d PasswordUpdatedData, at time.Time) Outgoing {
	return Outgoing{Type: UserPasswordUpdated, Key: d.Email,
		ID: UserPasswordUpdated + ":" + d.Email + ":" + strconv.FormatInt(at.UnixNano(), 10), Data: d}
}

// DNSCutoverRequestedData is the data of dns.cutover_requested (key: the
// domain), which asks dnsctl to switch the domain now, whatever
// switch_on_provisioned says. It carries nothing: the key and the
// envelope's time say it all.
type DNSCutoverRequestedData struct{}

// CutoverRequested is the event that an operator asked at at to switch
// domain; one per request.
func CutoverRequested(domain string, at time.Time) Outgoing {
	return dnsEvent(DNSCutoverRequested, domain, DNSCutoverRequestedData{}, at.UnixNano())
}

// DNSSwitchedData is the data of dns.switched (key: the domain): every
// authoritative server serves the new records.
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

// Switched is the event that domain serves its new records at serial
// d.Serial; one per domain and serial.
func Switched(domain string, d DNSSwitchedData) Outgoing {
	return dnsEvent(DNSSwitched, domain, d, d.Serial)
}

// DNSSkippedData is the data of dns.skipped (key: the domain).
type DNSSkippedData struct {
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

// SwitchSkipped is the event that domain, read at serial, was not
// switched for d.Code; one per domain, code and serial.
func SwitchSkipped(domain string, serial uint32, d DNSSkippedData) Outgoing {
	return dnsEvent(DNSSkipped, domain, d, d.Code, serial)
}

// DNSFailedData is the data of dns.failed (key: the domain).
type DNSFailedData struct {
	// Phase is plan, apply, verify or rollback.
	Phase  string `json:"phase"`
	Reason string `json:"reason"`
}

// SwitchFailed is the event that handling domain failed at at in
// d.Phase; one per failure.
func SwitchFailed(domain string, at time.Time, d DNSFailedData) Outgoing {
	return dnsEvent(DNSFailed, domain, d, d.Phase, at.UnixNano())
}

// DNSRolledBackData is the data of dns.rolled_back (key: the domain).
type DNSRolledBackData struct {
	Serial       uint32    `json:"serial"`
	RolledBackAt time.Time `json:"rolled_back_at"`
}

// RolledBack is the event that domain serves its old records again at
// serial d.Serial; one per domain and serial.
func RolledBack(domain string, d DNSRolledBackData) Outgoing {
	return dnsEvent(DNSRolledBack, domain, d, d.Serial)
}

// dnsEvent keys a dns.* event by the domain without its final dot and
// makes its id of the type, that key and parts.
func dnsEvent(typ, domain string, data any, parts ...any) Outgoing {
	key := strings.TrimSuffix(domain, ".")
	id := typ + ":" + key
	for _, p := range parts {
		switch v := p.(type) {
		case string:
			id += ":" + v
		case uint32:
			id += ":" + strconv.FormatUint(uint64(v), 10)
		case int64:
			id += ":" + strconv.FormatInt(v, 10)
		default:
			id += ":" + fmt.Sprint(v)
		}
	}
	return Outgoing{Type: typ, Key: key, ID: id, Data: data}
}
