package loader

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/services/loader/imapappend"
)

// A large body is read from the object store as it is appended, and
// checked against its record (size and SHA-256) on the way: a body the
// store serves other than the extractor read it fails the append before
// its last byte is sent, so the target never stores it. Such a read is
// not yet proof: a consumer placed on a replica still catching up after
// its node restarted serves a partial copy for a few seconds (seen in the
// cluster test), and a read during a leader election may end early. The
// body is read again on each retry; only one that stays unsound for
// bodyGrace, over bodyChecks reads, is taken for lost or altered by the
// broker (a replica's data lost in a crash, see deploy/README.md; the
// extractor reads every large body back before a record names it, so it
// was sound once). Retrying cannot mend that: the message is
// dead-lettered with the reason, and the rest of the mailbox goes on. A
// body that could not be read at all (a timeout) is only retried.

// bodyGrace and bodyChecks are how long and how often a large body must
// read back unsound before its message is dead-lettered.
const (
	bodyGrace  = 2 * time.Minute
	bodyChecks = 3
)

// unsoundBodies remembers, per object, when a large body was first found
// unsound and how often since.
type unsoundBodies struct {
	mu   sync.Mutex
	seen map[string]unsoundSeen
}

type unsoundSeen struct {
	first  time.Time
	checks int
}

// note records one unsound read of object and returns the tally.
func (u *unsoundBodies) note(object string, now time.Time) unsoundSeen {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.seen == nil {
		u.seen = map[string]unsoundSeen{}
	}
	s, ok := u.seen[object]
	if !ok {
		s.first = now
	}
	s.checks++
	u.seen[object] = s
	return s
}

// forget drops object's tally: it read back sound, or its message is
// dealt with.
func (u *unsoundBodies) forget(object string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.seen, object)
}

// errBodyCorrupt is a large body that the object store no longer holds as
// its record describes it.
var errBodyCorrupt = errors.New("large body in the object store does not match its record")

// bodyUnsound reports whether an append failed on a message's bytes being
// other than its record says, rather than on reading them.
func bodyUnsound(err error) bool {
	return errors.Is(err, errBodyCorrupt) || errors.Is(err, jetstream.ErrDigestMismatch) ||
		errors.Is(err, jetstream.ErrObjectNotFound) || errors.Is(err, imapappend.ErrSizeMismatch)
}

// verifiedBody passes a large body through, and at its end fails with
// errBodyCorrupt unless its size and SHA-256 are the record's.
type verifiedBody struct {
	io.ReadCloser
	name   string
	size   int64
	sha256 string
	n      int64
	h      hash.Hash
}

func newVerifiedBody(rc io.ReadCloser, name string, size int64, sha256Hex string) *verifiedBody {
	return &verifiedBody{ReadCloser: rc, name: name, size: size, sha256: sha256Hex, h: sha256.New()}
}

func (v *verifiedBody) Read(p []byte) (int, error) {
	k, err := v.ReadCloser.Read(p)
	v.n += int64(k)
	v.h.Write(p[:k])
	if errors.Is(err, io.EOF) {
		if verr := v.check(); verr != nil {
			return k, verr
		}
	}
	return k, err
}

func (v *verifiedBody) check() error {
	if v.n != v.size {
		return fmt.Errorf("%w: %s holds %d bytes, the record %d", errBodyCorrupt, v.name, v.n, v.size)
	}
	if got := hex.EncodeToString(v.h.Sum(nil)); got != v.sha256 {
		return fmt.Errorf("%w: %s has SHA-256 %s, the record %s", errBodyCorrupt, v.name, got, v.sha256)
	}
	return nil
}

// checkBody reads p's large body whole and says whether it is sound:
// nil, an error wrapping errBodyCorrupt when it is not (or is gone), any
// other error when it could not be read.
func (ss *session) checkBody(ctx context.Context, p pending) error {
	r, err := ss.svc.Broker.Bodies.Get(ctx, p.rec.Object)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("%w: %s is not in the object store", errBodyCorrupt, p.rec.Object)
	}
	if err != nil {
		return fmt.Errorf("read large body %s: %w", p.rec.Object, err)
	}
	defer r.Close()
	_, err = io.Copy(io.Discard, newVerifiedBody(r, p.rec.Object, p.rec.Size, p.rec.SHA256))
	if errors.Is(err, jetstream.ErrDigestMismatch) {
		return fmt.Errorf("%w: %s: %w", errBodyCorrupt, p.rec.Object, err)
	}
	if err != nil && !errors.Is(err, errBodyCorrupt) {
		return fmt.Errorf("read large body %s: %w", p.rec.Object, err)
	}
	return err
}

// deadUnsound dead-letters those of items whose large body has been
// unsound for bodyGrace over bodyChecks reads, and returns their UIDs. A
// body found unsound earlier than that, or one it cannot read, is an
// error: the append is retried later.
func (ss *session) deadUnsound(ctx context.Context, items []pending) (map[uint32]bool, error) {
	grace, checks := bodyGrace, bodyChecks
	if ss.svc.unsoundGrace != nil {
		grace, checks = *ss.svc.unsoundGrace, 1
	}
	dead := map[uint32]bool{}
	for _, p := range items {
		if p.rec.Object == "" {
			continue
		}
		err := ss.checkBody(ctx, p)
		if err == nil {
			ss.svc.unsound.forget(p.rec.Object)
			continue
		}
		if !errors.Is(err, errBodyCorrupt) {
			return nil, err
		}
		seen := ss.svc.unsound.note(p.rec.Object, time.Now())
		if seen.checks < checks || time.Since(seen.first) < grace {
			if seen.checks == 1 {
				ss.log.Warn().Err(err).Str("object", p.rec.Object).Uint32("uid", p.rec.UID).Dur("dead_letter_after", grace).
					Msg("large body reads back unsound; read again on the next attempt (a replica catching up serves a partial copy), dead-lettered if it stays so")
			}
			return nil, err
		}
		if err := ss.deadLetterFor(ctx, p, "", "", err.Error()); err != nil {
			return nil, err
		}
		ss.svc.unsound.forget(p.rec.Object)
		dead[p.rec.UID] = true
	}
	return dead, nil
}
