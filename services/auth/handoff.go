package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/services/auth/signin"
	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/sourcecred"
	"github.com/mailferry/mailferry/shared/subject"
)

// handOffTimeout bounds one hand-off, which outlives the request that
// proved the password (a client going away must not leave a credential
// stored and its pass not queued).
const handOffTimeout = 10 * time.Second

// SignInPassPrefix starts the id of the pass a hand-off queues.
const SignInPassPrefix = "signin-"

// sourceHandOff hands the legacy password a user proved to the migration
// of their mailbox, when the mailboxes file has no source password for
// it: the password, sealed, into the credentials bucket, and a pass over
// the mailbox onto the jobs stream. Of many hand-offs of one mailbox only
// the one that stores the credential queues the pass.
type sourceHandOff struct {
	mailboxes string
	store     *sourcecred.Store
	js        jetstream.JetStream
	events    event.Publisher
	log       zerolog.Logger
}

// HandOff implements signin.HandOff.
func (h *sourceHandOff) HandOff(ctx context.Context, email, password string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handOffTimeout)
	defer cancel()
	mb, err := mailboxOf(h.mailboxes, email)
	if err != nil {
		h.log.Error().Err(err).Str("email", email).Msg("source credential not handed off: mailboxes file unreadable")
		return
	}
	if mb == nil || mb.SourcePasswordFile != "" {
		// Not migrated, or migrated with the password the operator has.
		return
	}
	created, err := h.store.HandOff(ctx, mb.SourceUser, password)
	if err != nil {
		h.log.Error().Err(err).Str("email", email).Str("mailbox", mb.SourceUser).Msg("source credential not handed off: the user's next sign-in tries again")
		return
	}
	if !created {
		return
	}
	switch queued, err := h.queuedPass(ctx, mb.SourceUser); {
	case err != nil:
		h.log.Warn().Err(err).Str("mailbox", mb.SourceUser).Msg("cannot tell whether a pass of the mailbox waits in the queue: queuing one")
	case queued != "":
		// A pass not taken up yet (a campaign's, say) will find the
		// credential; one of the sign-in's would supersede it.
		h.log.Info().Str("email", email).Str("mailbox", mb.SourceUser).Str("pass", queued).Msg("source credential handed off by the user's sign-in: the mailbox's queued pass will use it")
		return
	}
	pass := SignInPassPrefix + nuid.Next()
	// The event first, as the orchestrators do: the pass is seen to
	// begin even if this process dies before the job is out.
	err = h.events.Publish(ctx, event.Queued(mb.SourceUser, pass))
	if err == nil {
		err = job.Publish(ctx, h.js, &job.Job{Mailbox: *mb, Pass: pass, Enqueued: time.Now().UTC()})
	}
	if err != nil {
		// Without its pass the credential would wait unused: forgotten,
		// so that the user's next sign-in hands it off again.
		if _, ferr := sourcecred.Forget(ctx, h.store.KV, mb.SourceUser); ferr != nil {
			h.log.Error().Err(ferr).Str("mailbox", mb.SourceUser).Msg("source credential stored but its pass not queued, and it could not be removed: it expires with nats.source_credential_ttl")
		}
		h.log.Error().Err(err).Str("email", email).Str("mailbox", mb.SourceUser).Msg("migration not queued after the user's sign-in: their next sign-in tries again")
		return
	}
	h.log.Info().Str("email", email).Str("mailbox", mb.SourceUser).Str("pass", pass).Msg("source credential handed off by the user's sign-in: migration queued")
}

// queuedPass is the pass of mailbox's newest job when the extractors have
// not taken it up yet ("" when there is none, or it was taken up).
func (h *sourceHandOff) queuedPass(ctx context.Context, mailbox string) (string, error) {
	st, err := h.js.Stream(ctx, broker.StreamJobs)
	if err != nil {
		return "", fmt.Errorf("jobs stream: %w", err)
	}
	m, err := st.GetLastMsgForSubject(ctx, subject.Job(mailbox))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("newest job of %s: %w", mailbox, err)
	}
	j, err := job.Decode(m.Data)
	if err != nil {
		return "", err
	}
	cons, err := h.js.Consumer(ctx, broker.StreamJobs, extractorConsumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		// No extractor ever ran: the job waits for the first.
		return j.Pass, nil
	}
	if err != nil {
		return "", fmt.Errorf("the extractors' jobs consumer: %w", err)
	}
	if m.Sequence > cons.CachedInfo().Delivered.Stream {
		return j.Pass, nil
	}
	return "", nil
}

// extractorConsumer is the extractors' durable consumer of the jobs
// stream (services/extractor).
const extractorConsumer = "extractor"

// mailboxOf is the row of the mailboxes file whose target is email (nil
// when none is).
func mailboxOf(file, email string) (*job.Mailbox, error) {
	boxes, err := job.ReadInventory(file)
	if err != nil {
		return nil, err
	}
	for i := range boxes {
		if strings.EqualFold(boxes[i].TargetUser, email) {
			return &boxes[i], nil
		}
	}
	return nil, nil
}

// sourceLogins asks the legacy server with the mailbox's source login
// (mailbox@postoffice on MailEnable), which the mailboxes file pairs with
// the account's address, rather than the address itself; an account the
// file does not list logs in as its address.
type sourceLogins struct {
	signin.LegacyVerifier
	mailboxes string
}

// Verify implements signin.LegacyVerifier.
func (v sourceLogins) Verify(ctx context.Context, user, password, client string) (bool, error) {
	mb, err := mailboxOf(v.mailboxes, user)
	if err != nil {
		return false, fmt.Errorf("legacy login of %s: %w", user, err)
	}
	if mb != nil {
		user = mb.SourceUser
	}
	return v.LegacyVerifier.Verify(ctx, user, password, client)
}
