package broker

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/config"
)

// A server whose users have permissions (deploy/nats/users.conf) answers
// a publish it refuses with an asynchronous error, and the request it
// carried goes unanswered until it times out: the timeout alone would
// not say why. The broker keeps the last refusal and adds it to the
// errors of what it does next.

// refusal is a permissions violation the server reported.
type refusal struct {
	text string
	at   time.Time
}

// refusalRecent is how long a refusal explains a failed request: longer
// than any request waits.
const refusalRecent = time.Minute

// asyncError logs what the server reported without a request to fail:
// a refusal at error (a person must give the user the permission or run
// the service as the right user), the rest at warn.
func (b *Broker) asyncError(log zerolog.Logger, sub *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrPermissionViolation) {
		text := refusalText(err)
		b.refused.Store(&refusal{text: text, at: time.Now()})
		ev := log.Error()
		if !b.firstRefusal(text) {
			// A service retrying what it may not: said once a minute.
			ev = log.Debug()
		}
		ev = ev.Str("nats_user", b.signedInAs()).Err(err)
		if sub != nil {
			ev = ev.Str("subject", sub.Subject)
		}
		ev.Msg("the broker refused this service: its nats user's permissions do not allow it (the server's authorization block: deploy/nats/users.conf)")
		return
	}
	ev := log.Warn()
	if errors.Is(err, nats.ErrSlowConsumer) {
		// JetStream's pull iterators drop a status message when their
		// channel is full and pull again; a progress sample dropped is
		// replaced by the next.
		ev = log.Debug()
	}
	if sub != nil {
		ev = ev.Str("subject", sub.Subject)
	}
	ev.Err(err).Msg("nats asynchronous error")
}

// firstRefusal reports whether text was not refused in the past minute,
// and notes it.
func (b *Broker) firstRefusal(text string) bool {
	b.refusalsMu.Lock()
	defer b.refusalsMu.Unlock()
	now := time.Now()
	if b.refusals == nil || len(b.refusals) > 1000 {
		b.refusals = map[string]time.Time{}
	}
	if at, ok := b.refusals[text]; ok && now.Sub(at) < refusalRecent {
		return false
	}
	b.refusals[text] = now
	return true
}

// refusalText is the server's words: `Permissions Violation for Publish
// to "$KV.mf_accounts.x"`.
func refusalText(err error) string {
	s := err.Error()
	if i := strings.Index(s, "Permissions Violation"); i >= 0 {
		return s[i:]
	}
	return s
}

// Explain adds the broker's last refusal of the past minute, if any, to
// err: what a request the broker refused ends in (a timeout) does not
// say why. A daemon's error goes through it (daemon.Run).
func (b *Broker) Explain(err error) error {
	if err == nil {
		return nil
	}
	r := b.refused.Load()
	if r == nil || time.Since(r.at) > refusalRecent || strings.Contains(err.Error(), refusedPrefix) {
		return err
	}
	return fmt.Errorf("%w (%s %q: %s)", err, refusedPrefix, b.signedInAs(), r.text)
}

// refusedPrefix starts what Explain adds.
const refusedPrefix = "the broker refused nats user"

// signedInAs names the nats user for logs: the configured user, or how
// it signs in otherwise.
func (b *Broker) signedInAs() string {
	switch {
	case b.cfg.User != "":
		return b.cfg.User
	case b.cfg.NKeyFile != "":
		return "nkey " + b.cfg.NKeyFile
	case b.cfg.CredsFile != "":
		return "creds " + b.cfg.CredsFile
	}
	return DefaultUser
}

// nkeyOption signs in with the NKey seed in path (mode 0600), the user a
// server's authorization block names by its public key.
func nkeyOption(path string) (nats.Option, error) {
	raw, err := config.ReadSecretFile(path)
	if err != nil {
		return nil, fmt.Errorf("nats.nkey_file: %w", err)
	}
	var seed []byte
	for _, line := range strings.Split(string(raw), "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "SU") {
			seed = []byte(line)
			break
		}
	}
	if seed == nil {
		return nil, fmt.Errorf("nats.nkey_file %s: no user seed (a line starting SU) in it", path)
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("nats.nkey_file %s: not a usable seed", path)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("nats.nkey_file %s: %w", path, err)
	}
	return nats.Nkey(pub, kp.Sign), nil
}
