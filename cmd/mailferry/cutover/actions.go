package cutover

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/cmd/mailferry/cutover/report"
	"github.com/mailferry/mailferry/cmd/mailferry/verify"
	"github.com/mailferry/mailferry/services/auth"
	"github.com/mailferry/mailferry/services/auth/authconfig"
	"github.com/mailferry/mailferry/services/dnsctl"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/sourcecred"
	"github.com/mailferry/mailferry/shared/subject"
)

// maxVerifyErrors is how many verifications of one mailbox in a row may
// fail to complete (a server down, a refused login) before the mailbox
// fails for a person to look at.
const maxVerifyErrors = 5

// maxCheckDifferences bounds the differences kept in a mailbox's
// verification record (a key-value entry has a size limit); the count is
// kept whole.
const maxCheckDifferences = 500

// provision makes the domain's mailboxes exist at the target. A domain
// provisioned before (its domain.provisioned is on the events stream) is
// provisioned now; without an auth section the target's mailboxes are
// taken as existing.
func (t *term) provision(ctx context.Context, d campaign.Domain) error {
	seen, err := t.provisionedBefore(ctx, d.Domain)
	if err != nil {
		return err
	}
	if seen {
		t.apply(ctx, d.Domain, campaign.Provisioned{})
		return nil
	}
	a, err := authconfig.Load(t.o.Config)
	if err != nil {
		return err
	}
	if !a.Configured() {
		t.log.Info().Str("domain", d.Domain).Msg("no auth section: the target mailboxes are taken as existing")
		t.apply(ctx, d.Domain, campaign.Provisioned{})
		return nil
	}
	t.provisioning.Lock()
	defer t.provisioning.Unlock()
	rep, err := auth.Provision(ctx, t.o.Config, t.o.Broker, t.log.With().Str("service", "auth").Logger(), d.Domain)
	if err != nil {
		return fmt.Errorf("provision %s: %w", d.Domain, err)
	}
	if slices.Contains(rep.Domains, d.Domain) {
		return nil // its domain.provisioned moves it
	}
	if seen, err := t.provisionedBefore(ctx, d.Domain); err != nil || seen {
		if seen {
			t.apply(ctx, d.Domain, campaign.Provisioned{})
		}
		return err
	}
	if slices.Contains(rep.DomainsOpen, d.Domain) {
		var refused []string
		for _, f := range rep.Failed {
			if campaign.DomainOf(f.Email) == d.Domain {
				refused = append(refused, f.Email+": "+f.Reason)
			}
		}
		if len(refused) > 0 {
			t.apply(ctx, d.Domain, campaign.ProvisionFailed{Reason: strings.Join(refused, "; ")})
			return nil
		}
	}
	t.sayOnce(d.Domain, "import", "provisioning waits for the domain's users: import them (mailferry users import)")
	return errWaiting
}

// errWaiting is an action that waits for something a person does: it is
// taken again after retry_after without a warning each time (what it
// waits for was said once).
var errWaiting = errors.New("waiting")

// provisionedBefore reports whether domain.provisioned of domain is on
// the events stream.
func (t *term) provisionedBefore(ctx context.Context, domain string) (bool, error) {
	st, err := t.o.Broker.JS.Stream(ctx, broker.StreamEvents)
	if err != nil {
		return false, fmt.Errorf("events stream: %w", err)
	}
	_, err = st.GetLastMsgForSubject(ctx, subject.Event(event.DomainProvisioned, domain))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("look for domain.provisioned of %s: %w", domain, err)
	}
	return true, nil
}

// enqueue queues the pass over the domain's mailboxes not loaded in it
// yet and not waiting for their user in it; the pass id makes a repeat a
// duplicate.
func (t *term) enqueue(ctx context.Context, d campaign.Domain, act campaign.Action) error {
	now := time.Now().UTC()
	n := 0
	for _, name := range d.Mailboxes {
		if slices.Contains(d.Loaded, name) || slices.Contains(d.Waiting, name) {
			continue
		}
		mb, ok := t.boxes[name]
		if !ok {
			return fmt.Errorf("enqueue %s: mailbox %s is not in the mailboxes file", act.Pass, name)
		}
		// The event first: a job whose mailbox.queued a kill lost would
		// be loaded before the next orchestrator queues it again, and its
		// mailbox's record would never see the pass begin.
		if err := t.events.Publish(ctx, event.Queued(name, act.Pass)); err != nil {
			return fmt.Errorf("enqueue %s: %w", act.Pass, err)
		}
		if err := job.Publish(ctx, t.o.Broker.JS, &job.Job{Mailbox: mb, Pass: act.Pass, Enqueued: now}); err != nil {
			return fmt.Errorf("enqueue %s: %w", act.Pass, err)
		}
		n++
	}
	t.log.Info().Str("domain", d.Domain).Str("pass", act.Pass).Str("kind", string(act.PassKind)).Int("mailboxes", n).Msg("pass enqueued")
	return nil
}

// requestSwitch asks dnsctl to switch the domain; without a dns section
// the domain's DNS is skipped.
func (t *term) requestSwitch(ctx context.Context, d campaign.Domain) error {
	if t.dns == nil {
		t.apply(ctx, d.Domain, campaign.SwitchSkipped{Code: campaign.CodeNotConfigured, Reason: "no dns section in the configuration"})
		return nil
	}
	if err := dnsctl.RequestCutover(ctx, t.events, d.Domain); err != nil {
		return fmt.Errorf("request the switch of %s: %w", d.Domain, err)
	}
	t.log.Info().Str("domain", d.Domain).Msg("switch requested from dnsctl")
	return nil
}

// verify compares each mailbox of the domain loaded in the pass and not
// verified yet, records the result and publishes mailbox.verified (with
// the differences found, which fail the domain).
func (t *term) verify(ctx context.Context, d campaign.Domain, act campaign.Action) error {
	opts, err := t.verifyOptions(ctx, d, act)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range d.Mailboxes {
		if !slices.Contains(d.Loaded, name) || slices.Contains(d.Verified, name) {
			continue
		}
		if err := t.verifyMailbox(ctx, name, act.Pass, opts); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// verifyOptions say how a domain's pass is verified. The mailboxes are in
// use: before the switch (the prestage pass) mail that reached the source
// after the pass started is new there, the next pass takes it; after the
// delta pass the check is source ⊆ target, mail delivered to the new
// server since the switch is new at target, and flags changed at the
// source since the copy are set at the target once (source flags win, as
// in an imapsync re-run: the delta pass runs right after the drain). With
// the ledger, a copy of a message deleted at the source since is kept and
// not a difference; accepted differences (verify accept) do not count.
func (t *term) verifyOptions(ctx context.Context, d campaign.Domain, act campaign.Action) ([]verify.Option, error) {
	var opts []verify.Option
	if t.o.Broker.Ledger != nil {
		opts = append(opts, verify.WithLedger(t.o.Broker.Ledger), verify.SourceLogins(t.o.Broker.LoginFailures, t.o.Config), verify.SourceCredentials(t.o.Broker.JS))
	}
	kv, err := verify.AcceptedBucket(ctx, t.o.Broker)
	if err != nil {
		return nil, err
	}
	if kv != nil {
		opts = append(opts, verify.WithAcceptedFrom(kv))
	}
	tokens, err := verify.TargetTokens(ctx, t.o.Config, t.o.Broker, t.log)
	if err != nil {
		return nil, err
	}
	if tokens != nil {
		opts = append(opts, tokens)
	}
	if act.PassKind == campaign.PassDelta {
		opts = append(opts, verify.ResyncFlags())
		if d.DNS.Switched() {
			opts = append(opts, verify.NewAfter(d.DNS.SwitchedAt))
		}
		return opts, nil
	}
	if !d.DNS.Switched() && !d.DNS.Skipped {
		// The source still receives mail; a delta pass follows the
		// switch. (A domain not switched gets no delta pass: its one
		// verification is strict.)
		for _, p := range d.Passes {
			if p.ID == act.Pass {
				opts = append(opts, verify.NewAtSourceAfter(p.Started.Add(-campaign.ClockSkew)))
			}
		}
	}
	return opts, nil
}

func (t *term) verifyMailbox(ctx context.Context, name, pass string, opts []verify.Option) error {
	select {
	case t.verifying <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	mr := verify.Mailbox(ctx, t.o.Config, t.boxes[name], opts...)
	<-t.verifying
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if mr.Error != "" {
		return t.verifyFailed(ctx, name, pass, mr.Error)
	}
	t.mu.Lock()
	delete(t.failures, name)
	t.mu.Unlock()
	all, missing := countDifferences(mr)
	raw, err := json.Marshal(trimmed(mr))
	if err != nil {
		return fmt.Errorf("verify %s: %w", name, err)
	}
	if err := t.store.PutCheck(ctx, campaign.Check{Mailbox: name, Pass: pass, At: time.Now().UTC(), OK: mr.OK, Differences: all, Report: raw}); err != nil {
		return err
	}
	sum := sha256.Sum256(raw)
	data := event.VerifiedData{Pass: pass, Messages: int64(mr.Messages), Digest: hex.EncodeToString(sum[:12]), Differences: all, Missing: missing}
	if err := t.events.Publish(ctx, event.Verified(name, data)); err != nil {
		return fmt.Errorf("record verification of %s: %w", name, err)
	}
	ev := t.log.Info()
	if !mr.OK {
		ev = t.log.Warn()
	}
	ev.Str("mailbox", name).Str("pass", pass).Int("messages", mr.Messages).Int64("differences", all).Int("new_at_target", mr.NewAtTarget).
		Int("new_at_source", mr.NewAtSource).Int("deleted_at_source", mr.DeletedAtSource).Int("resynced", mr.Resynced).Msg("mailbox verified")
	return nil
}

// verifyFailed counts a verification that could not complete; the
// maxVerifyErrors-th in a row fails the mailbox's pass for good.
func (t *term) verifyFailed(ctx context.Context, name, pass, reason string) error {
	t.mu.Lock()
	t.failures[name]++
	n := t.failures[name]
	t.mu.Unlock()
	if n < maxVerifyErrors {
		return fmt.Errorf("verify %s (attempt %d of %d): %s", name, n, maxVerifyErrors, reason)
	}
	d := event.FailedData{Pass: pass, Phase: "verifying", Reason: reason}
	if err := t.events.Publish(ctx, event.Failed(name, uint64(n), d)); err != nil {
		return fmt.Errorf("record the failed verification of %s: %w", name, err)
	}
	return nil
}

// countDifferences counts a mailbox's differences and the missing ones.
func countDifferences(m verify.MailboxReport) (all, missing int64) {
	for _, f := range m.Folders {
		for _, d := range f.Differences {
			all++
			if d.Kind == verify.KindMissing {
				missing++
			}
		}
	}
	if !m.OK && all == 0 {
		all = 1
	}
	return all, missing
}

// trimmed is m with at most maxCheckDifferences messages listed of each
// kind (the counts stay whole).
func trimmed(m verify.MailboxReport) verify.MailboxReport {
	m.Folders = slices.Clone(m.Folders)
	lists := []func(f *verify.FolderReport) *[]verify.Diff{
		func(f *verify.FolderReport) *[]verify.Diff { return &f.Differences },
		func(f *verify.FolderReport) *[]verify.Diff { return &f.NewAtTarget },
		func(f *verify.FolderReport) *[]verify.Diff { return &f.NewAtSource },
		func(f *verify.FolderReport) *[]verify.Diff { return &f.DeletedAtSource },
		func(f *verify.FolderReport) *[]verify.Diff { return &f.Resynced },
	}
	for _, list := range lists {
		left := maxCheckDifferences
		for i := range m.Folders {
			l := list(&m.Folders[i])
			*l = (*l)[:min(len(*l), left)]
			left -= len(*l)
		}
	}
	return m
}

// finish restores a switched, done domain's TTLs and writes the report of
// a domain that ended, each once.
func (t *term) finish(ctx context.Context, d campaign.Domain) {
	t.mu.Lock()
	busy := t.busy[d.Domain] || time.Now().Before(t.retry[d.Domain])
	t.mu.Unlock()
	needTTL := d.Phase == campaign.Done && d.DNS.Switched() && d.After.TTLRestored == 0 && t.dns != nil
	needReport := d.After.ReportPhase != d.Phase
	if busy || !needTTL && !needReport {
		return
	}
	t.mu.Lock()
	t.busy[d.Domain] = true
	t.mu.Unlock()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		err := t.after(ctx, d, needTTL, needReport)
		t.mu.Lock()
		defer t.mu.Unlock()
		t.busy[d.Domain] = false
		if err != nil {
			t.retry[d.Domain] = time.Now().Add(time.Duration(t.o.Settings.RetryAfter))
			if ctx.Err() == nil {
				t.log.Warn().Err(err).Str("domain", d.Domain).Msg("after the cutover: not done; trying again")
			}
		}
	}()
}

func (t *term) after(ctx context.Context, d campaign.Domain, ttl, report bool) error {
	var rec campaign.Recorded
	var errs []error
	if ttl {
		res := t.dns.RestoreTTL(ctx, d.Domain, t.o.Settings.RestoreTTL)
		switch res.Outcome {
		case dnsctl.TTLRestored, dnsctl.Unchanged:
			rec.TTL = t.o.Settings.RestoreTTL
			t.log.Info().Str("domain", d.Domain).Uint32("ttl", rec.TTL).Str("outcome", string(res.Outcome)).Msg("mail records' TTL restored")
		default:
			errs = append(errs, fmt.Errorf("restore the TTL of %s: %s: %s%s", d.Domain, res.Outcome, res.Reason, res.Error))
		}
	}
	if report && d.Phase == campaign.Done {
		// The domain's last pass and its verification, the last logins
		// to its source mailboxes, are behind it: the passwords users
		// handed over at sign-in go now, not when they expire. Before
		// the report, which is written once: a failure here is tried
		// again with it.
		if err := t.forgetCredentials(ctx, d); err != nil {
			return err
		}
	}
	if report {
		path, err := t.report(ctx, d.Domain)
		if err != nil {
			errs = append(errs, fmt.Errorf("report of %s: %w", d.Domain, err))
		} else {
			rec.Report, rec.ReportPhase = path, d.Phase
			t.log.Info().Str("domain", d.Domain).Str("phase", string(d.Phase)).Str("report", path).Msg("report written")
		}
	}
	if rec != (campaign.Recorded{}) {
		if _, err := t.store.Apply(ctx, d.Domain, rec); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// forgetCredentials deletes the source credentials the users of d's
// mailboxes handed over at sign-in (shared/sourcecred).
func (t *term) forgetCredentials(ctx context.Context, d campaign.Domain) error {
	kv, err := sourcecred.Bind(ctx, t.o.Broker.JS)
	if err != nil || kv == nil {
		return err
	}
	n, err := sourcecred.Forget(ctx, kv, d.Mailboxes...)
	if n > 0 {
		t.log.Info().Str("domain", d.Domain).Int("mailboxes", n).Msg("source credentials from the users' sign-ins deleted: the domain is done")
	}
	return err
}

// report writes the domain's report to the report directory and returns
// the path of its HTML page.
func (t *term) report(ctx context.Context, domain string) (string, error) {
	r, err := report.Gather(ctx, t.o.Config, t.o.Broker, t.store, domain)
	if err != nil {
		return "", err
	}
	path, _, err := report.Write(t.o.Settings.ReportDir, r)
	return path, err
}
