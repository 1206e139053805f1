package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/config"
	"github.com/mailferry/mailferry/shared/subject"
)

// Kinds of resource, as messages name them.
const (
	KindStream = "stream"
	KindBucket = "key-value bucket"
	KindStore  = "object store"
)

// BucketCampaign is the cutover campaign's bucket: a record per domain
// and per mailbox (shared/campaign), and the orchestrators' lease.
const BucketCampaign = "mf_campaign"

// BucketLoginFailures holds the source logins refused in the past hour,
// per mailbox (shared/loginlimit), shared by every process that logs in
// to the source.
const BucketLoginFailures = "mf_login_failures"

// BucketTargetTokens holds the loader's login tokens for the target (one
// per target mailbox, OpenSRS generate_token): secrets, readable only by
// the loader's broker user. An entry lives at most TargetTokenTTL after
// it was written, whatever the token's own expiry says.
const BucketTargetTokens = "mf_target_tokens"

// BucketSourceCredentials holds the source passwords users proved at
// sign-in, for mailboxes without a source password file
// (shared/sourcecred): secrets, sealed with the operator's key, written
// by the auth service and read by the extractor (and the operator's
// verify and cutover plan). An entry lives at most
// nats.source_credential_ttl.
const BucketSourceCredentials = "mf_source_credentials"

// TargetTokenTTL is the age at which the broker drops a stored token; a
// token is asked for at most this long (config.OMA.TokenHours <= 24).
const TargetTokenTTL = 24 * time.Hour

// resource is a stream, bucket or object store: how its writers declare
// it, and who does, for the message a reader gets when it is absent.
type resource struct {
	name, kind string
	// owner says who creates it and what to do about it.
	owner  string
	stream func(config.NATS) jetstream.StreamConfig
	bucket func(config.NATS) jetstream.KeyValueConfig
	store  func(config.NATS) jetstream.ObjectStoreConfig
}

// fileStream is s with what every stream here has: limits retention, file
// storage, the configured dedup window and replicas.
func fileStream(c config.NATS, s jetstream.StreamConfig) jetstream.StreamConfig {
	s.Retention, s.Storage = jetstream.LimitsPolicy, jetstream.FileStorage
	s.Duplicates, s.Replicas = c.DedupWindow.Std(), c.Replicas
	return s
}

// fileBucket is a key-value bucket on file storage with the configured
// replicas, keeping history revisions of each key.
func fileBucket(c config.NATS, name, description string, history uint8) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: name, Description: description, Storage: jetstream.FileStorage, Replicas: c.Replicas, History: history}
}

// resources are every stream, bucket and store, in declaration order.
var resources = []resource{{
	name: StreamMail, kind: KindStream, owner: "the extractor creates it; start it first or run migrate",
	stream: func(c config.NATS) jetstream.StreamConfig {
		return fileStream(c, jetstream.StreamConfig{
			Name:        StreamMail,
			Description: "mail records: folders, messages, end of pass; replayable",
			Subjects:    []string{subject.MailPrefix + ".>"},
			Discard:     jetstream.DiscardNew,
			MaxAge:      c.MailMaxAge.Std(),
			MaxBytes:    c.MailMaxBytes,
		})
	},
}, {
	name: StreamJobs, kind: KindStream, owner: "mailferry enqueue creates it with the first pass; run it first or run migrate",
	stream: func(c config.NATS) jetstream.StreamConfig {
		return fileStream(c, jetstream.StreamConfig{
			Name:        StreamJobs,
			Description: "mailbox jobs, one per mailbox and pass",
			Subjects:    []string{subject.JobPrefix + ".>"},
			Discard:     jetstream.DiscardNew,
		})
	},
}, {
	name: StreamEvents, kind: KindStream, owner: "every service creates it when it starts; start one first or run migrate",
	stream: func(c config.NATS) jetstream.StreamConfig {
		return fileStream(c, jetstream.StreamConfig{
			Name:        StreamEvents,
			Description: "lifecycle events every service reads and writes",
			Subjects:    []string{subject.EventPrefix + ".>"},
			Discard:     jetstream.DiscardOld,
			MaxAge:      90 * 24 * time.Hour,
		})
	},
}, {
	name: StreamDead, kind: KindStream, owner: "the loader creates it; start it first or run migrate",
	stream: func(c config.NATS) jetstream.StreamConfig {
		return fileStream(c, jetstream.StreamConfig{
			Name:        StreamDead,
			Description: "dead letters: messages the target refused for good",
			Subjects:    []string{subject.DeadPrefix + ".>"},
			Discard:     jetstream.DiscardNew,
		})
	},
}, {
	name: BucketCheckpoints, kind: KindBucket, owner: "the extractor creates it; start it first or run migrate",
	bucket: func(c config.NATS) jetstream.KeyValueConfig {
		return fileBucket(c, BucketCheckpoints, "extractor checkpoints per folder", 1)
	},
}, {
	name: BucketLedger, kind: KindBucket, owner: "the loader creates it; start it first or run migrate",
	bucket: func(c config.NATS) jetstream.KeyValueConfig {
		return fileBucket(c, BucketLedger, "loader ledger: source identity to target", 1)
	},
}, {
	name: BucketProgress, kind: KindBucket, owner: "the extractor and the loader create it; start one first or run migrate",
	bucket: func(c config.NATS) jetstream.KeyValueConfig {
		return fileBucket(c, BucketProgress, "latest progress per service and mailbox", 1)
	},
}, {
	name: BucketCampaign, kind: KindBucket, owner: "the cutover orchestrator creates it; run mailferry cutover start (or its daemon) first",
	bucket: func(c config.NATS) jetstream.KeyValueConfig {
		return fileBucket(c, BucketCampaign, "cutover campaign: domain and mailbox records, verifications, accepted differences, orchestrator lease", 5)
	},
}, {
	name: BucketLoginFailures, kind: KindBucket, owner: "the extractor creates it; start it first or run migrate",
	bucket: func(c config.NATS) jetstream.KeyValueConfig {
		b := fileBucket(c, BucketLoginFailures, "source logins refused in the past hour, per mailbox", 1)
		// loginlimit.Window: a refusal older than an hour no longer counts.
		b.TTL = time.Hour
		return b
	},
}, {
	name: BucketTargetTokens, kind: KindBucket, owner: "the loader creates it when target.auth is token; start it first or run migrate",
	bucket: func(c config.NATS) jetstream.KeyValueConfig {
		kv := fileBucket(c, BucketTargetTokens, "loader login tokens for the target, per mailbox (secrets)", 1)
		kv.TTL = TargetTokenTTL
		return kv
	},
}, {
	name: BucketSourceCredentials, kind: KindBucket, owner: "the auth service creates it when auth.source_credentials.key_file is set; start it first or run migrate",
	bucket: func(c config.NATS) jetstream.KeyValueConfig {
		kv := fileBucket(c, BucketSourceCredentials, "source passwords users proved at sign-in, per mailbox (sealed secrets)", 1)
		kv.TTL = c.SourceCredentialTTL.Std()
		return kv
	},
}, {
	name: StoreBodies, kind: KindStore, owner: "the extractor creates it; start it first or run migrate",
	store: func(c config.NATS) jetstream.ObjectStoreConfig {
		// Bodies live as long as the records that point at them.
		return jetstream.ObjectStoreConfig{
			Bucket: StoreBodies, Description: "bodies of messages too large for one record",
			Storage: jetstream.FileStorage, Replicas: c.Replicas, TTL: c.MailMaxAge.Std(),
		}
	},
}}

func lookupResource(name string) (resource, error) {
	for _, r := range resources {
		if r.name == name {
			return r, nil
		}
	}
	return resource{}, fmt.Errorf("broker: no stream, bucket or store %q", name)
}

// MissingError is a resource a process reads that its owner has not
// created yet.
type MissingError struct {
	Kind, Name string
	// Owner says who creates it and what to do about it.
	Owner string
}

// Error names the resource and who creates it.
func (e *MissingError) Error() string {
	return fmt.Sprintf("%s %s does not exist: %s", e.Kind, e.Name, e.Owner)
}

// Needs is what a process does with the shared resources, by name
// (StreamMail, BucketLedger...): those it Writes it declares, with its
// configuration's settings; those it only Reads it binds to, as their
// owner declared them.
type Needs struct {
	Writes []string
	Reads  []string
}

// DeclareAll declares every stream, bucket and store with this process's
// settings: for the all-in-one runners (migrate, nats) and tests, which
// own everything.
func (b *Broker) DeclareAll(ctx context.Context) error {
	for _, r := range resources {
		if err := b.declare(ctx, r); err != nil {
			return err
		}
	}
	b.all = true
	return nil
}

// Use declares what n writes and binds what it reads; a one-shot command's
// way: a resource it reads that does not exist is a *MissingError naming
// its owner.
func (b *Broker) Use(ctx context.Context, n Needs) error {
	if b.all {
		return nil
	}
	if err := b.declareAll(ctx, n.Writes); err != nil {
		return err
	}
	for _, name := range n.Reads {
		if slices.Contains(n.Writes, name) {
			continue
		}
		if err := b.bind(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// Await is Use for a daemon: it waits for each resource it reads until
// its owner creates it, saying once, at info, what it waits for, and
// gives up only when ctx ends. A daemon whose file sets the mail stream's
// limits without declaring that stream is told they are ignored.
func (b *Broker) Await(ctx context.Context, log zerolog.Logger, n Needs) error {
	if b.all {
		return nil
	}
	if err := b.declareAll(ctx, n.Writes); err != nil {
		return err
	}
	if b.cfg.SetsMailStream() && !slices.Contains(n.Writes, StreamMail) {
		log.Warn().Str("stream", StreamMail).
			Msg("nats.mail_max_age and nats.mail_max_bytes are ignored here: the extractor declares the mail stream, with its own file's limits")
	}
	for _, name := range n.Reads {
		if slices.Contains(n.Writes, name) {
			continue
		}
		if err := b.await(ctx, log, name); err != nil {
			return err
		}
	}
	return nil
}

func (b *Broker) await(ctx context.Context, log zerolog.Logger, name string) error {
	delay := 200 * time.Millisecond
	for said := false; ; {
		err := b.bind(ctx, name)
		var missing *MissingError
		if !errors.As(err, &missing) {
			return err
		}
		if !said {
			log.Info().Str(missing.Kind, missing.Name).Str("owner", missing.Owner).Msg("waiting for " + missing.Kind + " " + missing.Name)
			said = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s %s: %w", missing.Kind, missing.Name, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

func (b *Broker) declareAll(ctx context.Context, names []string) error {
	for _, name := range names {
		r, err := lookupResource(name)
		if err != nil {
			return err
		}
		if err := b.declare(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// declare creates r or updates it to this process's settings.
func (b *Broker) declare(ctx context.Context, r resource) error {
	switch r.kind {
	case KindStream:
		if _, err := b.JS.CreateOrUpdateStream(ctx, r.stream(b.cfg)); err != nil {
			return fmt.Errorf("declare stream %s: %w", r.name, b.Explain(err))
		}
	case KindBucket:
		kv, err := b.JS.CreateOrUpdateKeyValue(ctx, r.bucket(b.cfg))
		if err != nil {
			return fmt.Errorf("declare bucket %s: %w", r.name, b.Explain(err))
		}
		b.setBucket(r.name, kv)
	case KindStore:
		st, err := b.JS.CreateOrUpdateObjectStore(ctx, r.store(b.cfg))
		if err != nil {
			return fmt.Errorf("declare object store %s: %w", r.name, b.Explain(err))
		}
		b.Bodies = st
	}
	return nil
}

// bind looks up a resource as its owner declared it.
func (b *Broker) bind(ctx context.Context, name string) error {
	r, err := lookupResource(name)
	if err != nil {
		return err
	}
	missing := &MissingError{Kind: r.kind, Name: r.name, Owner: r.owner}
	switch r.kind {
	case KindStream:
		_, err = b.JS.Stream(ctx, r.name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return missing
		}
	case KindBucket:
		var kv jetstream.KeyValue
		kv, err = b.JS.KeyValue(ctx, r.name)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return missing
		}
		if err == nil {
			b.setBucket(r.name, kv)
		}
	case KindStore:
		var st jetstream.ObjectStore
		st, err = b.JS.ObjectStore(ctx, r.name)
		if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			return missing
		}
		if err == nil {
			b.Bodies = st
		}
	}
	if err != nil {
		return fmt.Errorf("bind %s %s: %w", r.kind, r.name, b.Explain(err))
	}
	return nil
}

func (b *Broker) setBucket(name string, kv jetstream.KeyValue) {
	switch name {
	case BucketCheckpoints:
		b.Checkpoints = kv
	case BucketLedger:
		b.Ledger = kv
	case BucketProgress:
		b.Progress = kv
	case BucketLoginFailures:
		b.LoginFailures = kv
	}
}
