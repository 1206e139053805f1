// Package provision creates the mailbox of every imported account at the
// target provider, idempotently, and announces each mailbox and each
// domain whose mailboxes all exist (dnsctl switches a domain's DNS on
// domain.provisioned).
package provision

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/auth/account"
	"github.com/mailferry/mailferry/shared/event"
)

// Target creates mailboxes at the new provider.
type Target interface {
	// Name is the provider's name in events.
	Name() string
	// CreateMailboxes makes each mailbox exist, leaving existing ones
	// alone; errs[i] is the outcome for emails[i].
	CreateMailboxes(ctx context.Context, emails []string) (errs []error)
}

// TokenMinter issues a temporary login with which the migration reaches
// a mailbox before its user has set a password.
type TokenMinter interface {
	MintToken(ctx context.Context, user string) (token string, valid time.Duration, err error)
}

// MailboxData is the data of mailbox.provisioned (key: the address).
type MailboxData = event.MailboxProvisionedData

// DomainData is the data of domain.provisioned (key: the domain).
type DomainData = event.DomainProvisionedData

// Provisioner runs provisioning passes.
type Provisioner struct {
	Accounts *account.Store
	Target   Target
	Events   event.Publisher
	Log      zerolog.Logger
	// Tokens and TokenDir, both set, write a fresh migration token for
	// every provisioned mailbox to TokenDir/<address> (mode 0600).
	Tokens   TokenMinter
	TokenDir string
	// BatchSize is how many mailboxes go to the target at once.
	BatchSize int
	// Domains, when set, limits the pass to the accounts of these
	// domains (a cutover campaign provisions a domain when its turn
	// comes, not every imported one).
	Domains []string
}

// Failure is a mailbox the target could not create.
type Failure struct {
	Email  string `json:"email"`
	Reason string `json:"reason"`
}

// Report says what a pass did.
type Report struct {
	Mailboxes   int       `json:"mailboxes"`
	Created     int       `json:"created"`
	Already     int       `json:"already"`
	Failed      []Failure `json:"failed,omitempty"`
	Tokens      int       `json:"tokens"`
	Domains     []string  `json:"domains_announced,omitempty"`
	DomainsOpen []string  `json:"domains_incomplete,omitempty"`
}

// ErrIncomplete is returned when some mailbox could not be created.
var ErrIncomplete = errors.New("some mailboxes could not be provisioned")

// Run provisions every account not yet provisioned, then announces the
// domains that became complete. It can be run any number of times.
func (p *Provisioner) Run(ctx context.Context) (Report, error) {
	accounts, err := p.Accounts.List(ctx)
	if err != nil {
		return Report{}, err
	}
	if p.Domains != nil {
		accounts = slices.DeleteFunc(accounts, func(a *account.Account) bool { return !slices.Contains(p.Domains, a.Domain) })
	}
	rep := Report{Mailboxes: len(accounts)}
	var pending []*account.Account
	for _, a := range accounts {
		if a.Provisioned() {
			rep.Already++
		} else {
			pending = append(pending, a)
		}
	}
	size := max(p.BatchSize, 1)
	for start := 0; start < len(pending); start += size {
		batch := pending[start:min(start+size, len(pending))]
		if err := p.createBatch(ctx, batch, &rep); err != nil {
			return rep, err
		}
	}
	if err := p.writeTokens(ctx, accounts, &rep); err != nil {
		return rep, err
	}
	if err := p.announceDomains(ctx, accounts, &rep); err != nil {
		return rep, err
	}
	if len(rep.Failed) > 0 {
		return rep, fmt.Errorf("%w: %d of %d", ErrIncomplete, len(rep.Failed), rep.Mailboxes)
	}
	return rep, nil
}

func (p *Provisioner) createBatch(ctx context.Context, batch []*account.Account, rep *Report) error {
	emails := make([]string, len(batch))
	for i, a := range batch {
		emails[i] = a.Email
	}
	errs := p.Target.CreateMailboxes(ctx, emails)
	for i, a := range batch {
		if err := ctx.Err(); err != nil {
			return err
		}
		if errs[i] != nil {
			p.Log.Error().Err(errs[i]).Str("mailbox", a.Email).Str("provider", p.Target.Name()).Msg("mailbox not provisioned")
			rep.Failed = append(rep.Failed, Failure{Email: a.Email, Reason: errs[i].Error()})
			continue
		}
		if err := p.markProvisioned(ctx, a); err != nil {
			return err
		}
		rep.Created++
	}
	return nil
}

// markProvisioned publishes before recording: a crash in between
// republishes with the same id, which the broker drops as a duplicate.
func (p *Provisioner) markProvisioned(ctx context.Context, a *account.Account) error {
	data := MailboxData{Email: a.Email, Domain: a.Domain, Provider: p.Target.Name()}
	if err := p.Events.Publish(ctx, event.ProvisionedMailbox(data)); err != nil {
		return err
	}
	now := time.Now().UTC()
	stored, err := p.Accounts.Update(ctx, a.Email, func(cur *account.Account) error {
		if cur.Provisioned() {
			return account.ErrUnchanged
		}
		cur.ProvisionedAt = now
		return nil
	})
	if err != nil {
		return fmt.Errorf("record provisioning of %s: %w", a.Email, err)
	}
	*a = *stored
	p.Log.Info().Str("mailbox", a.Email).Str("provider", p.Target.Name()).Msg("mailbox provisioned")
	return nil
}

func (p *Provisioner) writeTokens(ctx context.Context, accounts []*account.Account, rep *Report) error {
	if p.Tokens == nil || p.TokenDir == "" {
		return nil
	}
	if err := os.MkdirAll(p.TokenDir, 0o700); err != nil {
		return fmt.Errorf("token dir: %w", err)
	}
	for _, a := range accounts {
		if !a.Provisioned() {
			continue
		}
		tok, valid, err := p.Tokens.MintToken(ctx, a.Email)
		if err != nil {
			p.Log.Error().Err(err).Str("mailbox", a.Email).Msg("migration token not issued")
			rep.Failed = append(rep.Failed, Failure{Email: a.Email, Reason: "token: " + err.Error()})
			continue
		}
		if err := writeSecret(filepath.Join(p.TokenDir, a.Email), tok); err != nil {
			return err
		}
		rep.Tokens++
		p.Log.Info().Str("mailbox", a.Email).Dur("valid", valid).Msg("migration token written")
	}
	return nil
}

// writeSecret replaces path with a 0600 file holding secret.
func writeSecret(path, secret string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".token-")
	if err != nil {
		return fmt.Errorf("write token: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(secret + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("write token: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write token: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write token: %w", err)
	}
	return nil
}

func (p *Provisioner) announceDomains(ctx context.Context, accounts []*account.Account, rep *Report) error {
	total, done := map[string]int{}, map[string]int{}
	for _, a := range accounts {
		total[a.Domain]++
		if a.Provisioned() {
			done[a.Domain]++
		}
	}
	domains := make([]string, 0, len(total))
	for d := range total {
		domains = append(domains, d)
	}
	sort.Strings(domains)
	for _, d := range domains {
		if done[d] < total[d] {
			rep.DomainsOpen = append(rep.DomainsOpen, d)
			continue
		}
		announced, err := p.Accounts.DomainAnnounced(ctx, d)
		if err != nil {
			return err
		}
		if announced {
			continue
		}
		data := DomainData{Domain: d, Mailboxes: total[d], Provider: p.Target.Name()}
		if err := p.Events.Publish(ctx, event.ProvisionedDomain(data)); err != nil {
			return err
		}
		if err := p.Accounts.MarkDomainAnnounced(ctx, d); err != nil {
			return err
		}
		rep.Domains = append(rep.Domains, d)
		p.Log.Info().Str("domain", d).Int("mailboxes", total[d]).Msg("domain provisioned")
	}
	return nil
}
