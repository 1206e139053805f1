// Package update builds and sends RFC 2136 dynamic updates: one message per
// zone, TSIG-signed (RFC 8945), whose prerequisites require every replaced
// RRset to still hold the values it was planned from, so a concurrent edit
// fails the update instead of being overwritten.
package update

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/miekg/dns"

	"github.com/mailferry/mailferry/services/dnsctl/bindkey"
	"github.com/mailferry/mailferry/services/dnsctl/records"
)

// Kinds of failed updates, for errors.Is.
var (
	// ErrPrerequisite: the records no longer hold the planned old values.
	ErrPrerequisite = errors.New("prerequisite failed")
	// ErrRefused: the server's policy does not allow the update.
	ErrRefused = errors.New("update refused")
	// ErrTSIG: the server did not accept the key or its signature.
	ErrTSIG = errors.New("tsig rejected")
	// ErrNoAnswer: no answer came; the update may or may not be applied.
	ErrNoAnswer = errors.New("no answer")
	// ErrType: dnsctl never changes records of this type.
	ErrType = errors.New("type not changed by dnsctl")
)

// Changeable reports whether dnsctl may change records of type t. NS and
// SOA are never among them: the zone's delegation is not ours to touch.
func Changeable(t string) bool {
	switch t {
	case "MX", "A", "AAAA", "CNAME", "TXT", "SRV":
		return true
	}
	return false
}

// Message builds the update of zone that applies changes: for each, a
// prerequisite that Old is the whole RRset (or that none exists), the
// removal of Old's records that New lacks and the addition of New's. All
// removals come before all additions.
func Message(zone string, changes []records.Change) (*dns.Msg, error) {
	zone = dns.CanonicalName(zone)
	m := new(dns.Msg)
	m.SetUpdate(zone)
	var inserts []dns.RR
	for _, c := range changes {
		if err := check(zone, c); err != nil {
			return nil, err
		}
		if err := prerequisite(m, c.Old); err != nil {
			return nil, err
		}
		removed, added, err := diff(c)
		if err != nil {
			return nil, err
		}
		if len(removed) > 0 {
			m.Remove(removed)
		}
		inserts = append(inserts, added...)
	}
	if len(inserts) > 0 {
		m.Insert(inserts)
	}
	return m, nil
}

func check(zone string, c records.Change) error {
	if !Changeable(c.Old.Type) || c.Old.Type != c.New.Type {
		return fmt.Errorf("update %s: %s %s: %w", zone, c.Name(), c.Old.Type, ErrType)
	}
	if !records.InZone(c.Old.Name, zone) || c.Old.Name != c.New.Name {
		return fmt.Errorf("update %s: %s is outside the zone", zone, c.Name())
	}
	return nil
}

func prerequisite(m *dns.Msg, old records.RRset) error {
	if !old.Exists() {
		m.RRsetNotUsed([]dns.RR{old.Stub()})
		return nil
	}
	rrs, err := old.RRs()
	if err != nil {
		return err
	}
	m.Used(rrs)
	return nil
}

// diff returns the records to remove and to add. A changed TTL replaces
// every record, since an RRset has one TTL.
func diff(c records.Change) (removed, added []dns.RR, err error) {
	oldRRs, err := c.Old.RRs()
	if err != nil {
		return nil, nil, err
	}
	newRRs, err := c.New.RRs()
	if err != nil {
		return nil, nil, err
	}
	ttlChanged := c.Old.Exists() && c.New.Exists() && c.Old.TTL != c.New.TTL
	for _, o := range oldRRs {
		if ttlChanged || !containsRR(newRRs, o) {
			removed = append(removed, o)
		}
	}
	for _, n := range newRRs {
		if ttlChanged || !containsRR(oldRRs, n) {
			added = append(added, n)
		}
	}
	return removed, added, nil
}

func containsRR(set []dns.RR, rr dns.RR) bool {
	for _, x := range set {
		if dns.IsDuplicate(x, rr) {
			return true
		}
	}
	return false
}

// Sender sends signed updates to the primary server.
type Sender struct {
	// Server is host:port of the primary.
	Server string
	Key    bindkey.Key
	// Timeout bounds one update (default 10s).
	Timeout time.Duration
}

// Send signs m with the key and sends it over TCP; nil means NOERROR.
// Every other outcome is an *Error saying what the server answered.
func (s *Sender) Send(ctx context.Context, m *dns.Msg) error {
	zone := m.Question[0].Name
	m.SetTsig(s.Key.Name, s.Key.Algorithm, 300, time.Now().Unix())
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	cl := &dns.Client{Net: "tcp", Timeout: timeout, TsigSecret: s.Key.Secrets()}
	r, _, err := cl.ExchangeContext(ctx, m, s.Server)
	if r == nil {
		if err == nil {
			err = errors.New("empty answer")
		}
		return &Error{Zone: zone, Server: s.Server, kind: ErrNoAnswer, cause: err}
	}
	return interpret(zone, s.Server, s.Key, r, err)
}

func interpret(zone, server string, key bindkey.Key, r *dns.Msg, verr error) error {
	e := &Error{Zone: zone, Server: server, Rcode: r.Rcode, key: key.Name}
	if t := r.IsTsig(); t != nil {
		e.TSIGError = t.Error
	}
	switch {
	case e.TSIGError != dns.RcodeSuccess:
		e.kind = ErrTSIG
	case r.Rcode == dns.RcodeSuccess && verr != nil:
		e.kind, e.cause = ErrTSIG, fmt.Errorf("the answer's signature does not verify: %w", verr)
	case r.Rcode == dns.RcodeSuccess:
		return nil
	case r.Rcode == dns.RcodeNXRrset, r.Rcode == dns.RcodeYXRrset, r.Rcode == dns.RcodeNameError, r.Rcode == dns.RcodeYXDomain:
		e.kind = ErrPrerequisite
	case r.Rcode == dns.RcodeRefused:
		e.kind = ErrRefused
	case r.Rcode == dns.RcodeNotAuth:
		e.kind = ErrTSIG
	default:
		e.kind = errors.New("update failed")
	}
	return e
}

// Error is a failed update.
type Error struct {
	Zone   string
	Server string
	// Rcode is the server's answer; TSIGError the error in its TSIG record.
	Rcode     int
	TSIGError uint16
	key       string
	kind      error
	cause     error
}

// Unwrap returns the kind (ErrPrerequisite, ...) and any cause.
func (e *Error) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// Error says what the server answered and what that means for the zone.
func (e *Error) Error() string {
	head := fmt.Sprintf("update %s at %s: ", e.Zone, e.Server)
	switch {
	case e.kind == ErrNoAnswer:
		return head + fmt.Sprintf("no answer (%v); the update may or may not have been applied", e.cause)
	case e.kind == ErrPrerequisite:
		return head + fmt.Sprintf("prerequisite failed (%s): the records no longer hold the planned old values", rcode(e.Rcode))
	case e.kind == ErrRefused:
		return head + "refused (REFUSED): the server's update-policy does not let the key change these records, the server is not the primary, " +
			"or the result would fail its integrity checks (such as an MX naming a CNAME); the server's log says which"
	case e.TSIGError == dns.RcodeBadKey:
		return head + fmt.Sprintf("TSIG key %s is unknown to the server (%s, BADKEY)", e.key, rcode(e.Rcode))
	case e.TSIGError == dns.RcodeBadSig:
		return head + fmt.Sprintf("TSIG signature rejected (%s, BADSIG): the secret of %s does not match the server's", rcode(e.Rcode), e.key)
	case e.TSIGError == dns.RcodeBadTime:
		return head + fmt.Sprintf("TSIG time rejected (%s, BADTIME): the clocks differ by more than the fudge", rcode(e.Rcode))
	case e.kind == ErrTSIG && e.cause != nil:
		return head + e.cause.Error()
	case e.Rcode == dns.RcodeNotAuth:
		return head + "not authoritative for the zone (NOTAUTH)"
	}
	return head + fmt.Sprintf("server answered %s", rcode(e.Rcode))
}

func rcode(c int) string {
	if s, ok := dns.RcodeToString[c]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", c)
}

// Timeout reports whether err is an update that got no answer.
func Timeout(err error) bool {
	var ne net.Error
	return errors.Is(err, ErrNoAnswer) || errors.As(err, &ne) && ne.Timeout()
}
