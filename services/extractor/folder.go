package extractor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/mailferry/mailferry/shared/broker"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/imapdial"
	"github.com/mailferry/mailferry/shared/job"
	"github.com/mailferry/mailferry/shared/kvjson"
	"github.com/mailferry/mailferry/shared/mailscan"
	"github.com/mailferry/mailferry/shared/record"
	"github.com/mailferry/mailferry/shared/subject"
)

// errFolderGone marks a listed folder the server no longer selects.
var errFolderGone = errors.New("folder no longer exists")

// temporary says whether a NO with this code may go away by itself.
func temporary(code imap.ResponseCode) bool {
	switch code {
	case imap.ResponseCodeUnavailable, imap.ResponseCodeInUse, imap.ResponseCodeServerBug, imap.ResponseCodeLimit:
		return true
	}
	return false
}

// Checkpoint is what the extractor remembers per folder: every message up
// to LastUID under UIDValidity (numbering Epoch) is acknowledged by the
// broker.
//
// UIDs can change under one UIDVALIDITY: MailEnable keeps them only in a
// folder's _index.xml and numbers the folder anew when it rebuilds that
// file. A resume checks that they did not (see renumbered): the folder's
// UIDNEXT must not have gone backwards since UIDNext, and the newest of
// Anchors still at its UID must be the same message. When they did, the
// folder is extracted again under the next Epoch, a new identity for
// every record of it, and the loader matches it by content against what
// the target holds.
type Checkpoint struct {
	UIDValidity uint32 `json:"uidvalidity"`
	// Epoch counts the renumberings found under UIDValidity: 0 until the
	// first (what checkpoints written before it existed are).
	Epoch   uint32    `json:"epoch,omitempty"`
	LastUID uint32    `json:"last_uid"`
	Updated time.Time `json:"updated"`
	// UIDNext is the folder's UIDNEXT when the checkpoint was written (0:
	// not known).
	UIDNext uint32 `json:"uidnext,omitempty"`
	// Anchors are the newest acknowledged messages, newest first: the
	// first is the message at LastUID. Absent from checkpoints written
	// before them, which resume unchecked.
	Anchors []Anchor `json:"anchors,omitempty"`
}

// Anchor is an acknowledged message as a checkpoint remembers it, to
// recognise it at its UID on resume.
type Anchor struct {
	UID uint32 `json:"uid"`
	// Size is its RFC822.SIZE as the source reported it (compared with
	// what the source reports again: some servers estimate it), SHA256
	// the hash of its bytes.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// maxAnchors is how many of the newest acknowledged messages a checkpoint
// keeps. One (the message at LastUID) would do to notice a renumbering;
// the others tell a renumbered folder from one whose newest message was
// merely deleted, which would otherwise cost a full read of the folder.
const maxAnchors = 3

// CheckpointKey is the key-value key of a folder's checkpoint.
func CheckpointKey(mailbox, folder string) string {
	return subject.Key(mailbox) + "." + subject.Key(folder)
}

type folderExtraction struct {
	svc  *Service
	c    *imapclient.Client
	j    *job.Job
	f    folderInfo
	pub  *publisher
	prog *event.Reporter
	// check stops the folder, checkpointed, once a newer pass exists.
	check *job.PassCheck
	log   zerolog.Logger

	key     string
	cp      Checkpoint
	cpRev   uint64
	sum     record.FolderSummary
	sinceCP int
	// prev is the UID of the last message published in this fetch.
	prev uint32
	// litFailed records that reading a message's literal failed.
	litFailed bool
	// notMail are the folder's messages this run found to be no mail.
	notMail []record.NotMailItem
	// uidNext is the folder's UIDNEXT at EXAMINE, for the checkpoint.
	uidNext uint32
	// renewed is set when the checkpoint took a new UIDVALIDITY or
	// epoch, which it must record even with nothing new extracted.
	renewed bool
}

func (fx *folderExtraction) run(ctx context.Context) (record.FolderSummary, error) {
	// The previous folder drained the publisher before it checkpointed.
	fx.pub.startFolder()
	fx.key = CheckpointKey(fx.j.SourceUser, fx.f.Name)
	if err := fx.loadCheckpoint(ctx); err != nil {
		return fx.sum, err
	}
	sel, err := fx.examine(ctx)
	if err != nil {
		return fx.sum, err
	}
	fx.uidNext = uint32(sel.UIDNext)
	fx.prog.Current.Total += int64(sel.NumMessages)
	if fx.cp.UIDValidity != sel.UIDValidity {
		if fx.cp.UIDValidity != 0 {
			fx.log.Warn().Uint32("old_uidvalidity", fx.cp.UIDValidity).Uint32("uidvalidity", sel.UIDValidity).Msg("uidvalidity changed, folder extracted again")
		}
		fx.cp, fx.renewed = Checkpoint{UIDValidity: sel.UIDValidity}, true
	} else {
		why, err := renumbered(ctx, fx.cp, fx.uidNext, fx)
		if err != nil {
			return fx.sum, fmt.Errorf("check the checkpoint: %w", err)
		}
		if why != "" {
			fx.log.Warn().Uint32("uidvalidity", sel.UIDValidity).Str("why", why).Uint32("epoch", fx.cp.Epoch+1).
				Msg("folder renumbered under the same uidvalidity: extracted again under a new epoch, the loader matches it by content")
			fx.cp, fx.renewed = Checkpoint{UIDValidity: sel.UIDValidity, Epoch: fx.cp.Epoch + 1}, true
		}
	}
	fx.sum = record.FolderSummary{Name: fx.f.Name, UIDValidity: sel.UIDValidity, Epoch: fx.cp.Epoch, Total: sel.NumMessages}
	if err := fx.publishFolder(ctx, sel); err != nil {
		return fx.sum, err
	}
	if sel.NumMessages > 0 && (sel.UIDNext == 0 || uint32(sel.UIDNext) > fx.cp.LastUID+1) {
		err := fx.fetchAll(ctx)
		if errors.Is(err, job.ErrStopping) || errors.Is(err, job.ErrSuperseded) {
			// Keep what the broker has: checkpoint it, then stop.
			if derr := fx.pub.drain(ctx); derr != nil {
				return fx.sum, derr
			}
			return fx.sum, errors.Join(err, fx.saveCheckpoint(ctx))
		}
		if err != nil {
			return fx.sum, err
		}
	}
	if err := fx.pub.drain(ctx); err != nil {
		return fx.sum, err
	}
	if err := fx.saveCheckpoint(ctx); err != nil {
		return fx.sum, err
	}
	fx.log.Debug().Int64("messages", fx.sum.Messages).Int64("bytes", fx.sum.Bytes).Uint32("last_uid", fx.cp.LastUID).Msg("folder extracted")
	return fx.sum, nil
}

func (fx *folderExtraction) loadCheckpoint(ctx context.Context) error {
	e, err := kvjson.Get[Checkpoint](ctx, fx.svc.Broker.Checkpoints, fx.key)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	fx.cp, fx.cpRev = e.V, e.Rev
	return nil
}

// saveCheckpoint records the last acknowledged UID (publisher.lastAcked)
// with compare-and-set, so two extractors that race on one folder cannot
// move its checkpoint backwards unseen.
func (fx *folderExtraction) saveCheckpoint(ctx context.Context) error {
	lastUID, anchors := fx.pub.lastAcked(fx.cp)
	if lastUID == fx.cp.LastUID && fx.cpRev != 0 && !fx.renewed {
		return nil
	}
	fx.cp.LastUID, fx.cp.Anchors = lastUID, anchors
	if fx.uidNext != 0 {
		fx.cp.UIDNext = fx.uidNext
	}
	fx.cp.Updated = time.Now().UTC()
	rev, err := kvjson.Write(ctx, fx.svc.Broker.Checkpoints, fx.key, fx.cp, fx.cpRev)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	fx.cpRev, fx.renewed = rev, false
	return nil
}

func (fx *folderExtraction) examine(ctx context.Context) (*imap.SelectData, error) {
	defer imapdial.Watch(ctx, fx.c, fx.svc.Config.Source.CommandTimeout.Std()).Stop()
	sel, err := fx.c.Select(fx.f.Name, &imap.SelectOptions{ReadOnly: true}).Wait()
	var ie *imap.Error
	if errors.As(err, &ie) && ie.Type == imap.StatusResponseTypeNo && !temporary(ie.Code) {
		return nil, fmt.Errorf("examine: %w", errors.Join(err, errFolderGone))
	}
	if err != nil {
		return nil, fmt.Errorf("examine: %w", err)
	}
	return sel, nil
}

func (fx *folderExtraction) publishFolder(ctx context.Context, sel *imap.SelectData) error {
	f := fx.f.Folder
	f.Mailbox, f.TargetUser, f.Pass = fx.j.SourceUser, fx.j.TargetUser, fx.j.Pass
	f.UIDValidity, f.Epoch, f.UIDNext, f.Messages = sel.UIDValidity, fx.cp.Epoch, uint32(sel.UIDNext), sel.NumMessages
	m, err := record.FolderMsg(&f)
	if err != nil {
		return err
	}
	if _, err := fx.svc.Broker.JS.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish folder record: %w", err)
	}
	return nil
}

// fetchAll streams UID FETCH last+1:* in UID order. Bodies are read one at
// a time; nothing holds more than one message plus the bounded bytes in
// flight to the broker.
func (fx *folderExtraction) fetchAll(ctx context.Context) error {
	fx.prev = fx.cp.LastUID
	start := imap.UID(fx.cp.LastUID + 1)
	set := imap.UIDSet{}
	set.AddRange(start, 0)
	wd := imapdial.Watch(ctx, fx.c, fx.svc.Config.Source.CommandTimeout.Std())
	defer wd.Stop()
	cmd := fx.c.Fetch(set, &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, RFC822Size: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	})
	var ferr error
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		wd.Kick()
		if ferr != nil {
			continue // drain the command after a failure
		}
		if job.IsStopping(ctx) {
			ferr = job.ErrStopping
			imapdial.Abort(fx.c) // end the FETCH now rather than read the folder out
			continue
		}
		ferr = fx.one(ctx, msg)
		if ferr != nil && fx.litFailed {
			// go-imap must not read the failed literal again, as
			// draining would: end the connection and leave it.
			imapdial.Abort(fx.c)
			return ferr
		}
		if ferr != nil {
			imapdial.Abort(fx.c) // a retry or the newer pass reads the rest
		}
	}
	cerr := cmd.Close()
	if ferr != nil {
		return ferr
	}
	if job.IsStopping(ctx) {
		return job.ErrStopping
	}
	if cerr != nil {
		return fmt.Errorf("uid fetch %d:*: %w", start, wd.Err(cerr))
	}
	return nil
}

func (fx *folderExtraction) one(ctx context.Context, msg *imapclient.FetchMessageData) error {
	rec := &record.Message{
		Mailbox: fx.j.SourceUser, TargetUser: fx.j.TargetUser, Pass: fx.j.Pass,
		Folder: fx.f.Name, Delim: fx.f.Delim, UIDValidity: fx.cp.UIDValidity, Epoch: fx.cp.Epoch,
	}
	var reported int64
	var body []byte
	var notMail string
	haveBody := false
	for {
		item := msg.Next()
		if item == nil {
			break
		}
		switch it := item.(type) {
		case imapclient.FetchItemDataUID:
			rec.UID = uint32(it.UID)
		case imapclient.FetchItemDataFlags:
			rec.Flags = keepFlags(it.Flags)
		case imapclient.FetchItemDataInternalDate:
			rec.InternalDate = it.Time
		case imapclient.FetchItemDataRFC822Size:
			// The literal's own length is authoritative; RFC822.SIZE
			// is only a server's estimate on some platforms, kept to
			// be compared with the server's word again (Anchor).
			reported = it.Size
		case imapclient.FetchItemDataBodySection:
			if it.Literal == nil {
				return fmt.Errorf("seq %d: server sent NIL body", msg.SeqNum)
			}
			b, kind, err := fx.readBody(ctx, rec, it.Literal)
			if err != nil {
				return fmt.Errorf("seq %d: %w", msg.SeqNum, err)
			}
			body, notMail, haveBody = b, kind, true
		}
	}
	if rec.UID == 0 || rec.UID <= fx.cp.LastUID {
		// "UID n:*" always returns the highest message, even below n.
		return nil
	}
	if !haveBody {
		return fmt.Errorf("uid %d: server sent no body", rec.UID)
	}
	rec.PrevUID = fx.prev
	anchor := Anchor{UID: rec.UID, Size: reported, SHA256: rec.SHA256}
	if notMail != "" {
		return fx.publishNotMail(ctx, rec, notMail, anchor)
	}
	if err := fx.pub.publish(ctx, rec, body, anchor); err != nil {
		return err
	}
	fx.prev = rec.UID
	fx.sum.Messages++
	fx.sum.Bytes += rec.Size
	fx.prog.Current.Messages++
	fx.prog.Current.Bytes += rec.Size
	fx.sinceCP++
	if fx.sinceCP >= fx.svc.Settings.CheckpointEvery {
		fx.sinceCP = 0
		fx.prog.Send(ctx, false)
		if err := fx.pub.collect(ctx, false); err != nil {
			return err
		}
		if err := fx.saveCheckpoint(ctx); err != nil {
			return err
		}
		if fx.check != nil {
			return fx.check.Superseded(ctx)
		}
	}
	return nil
}

// readBody reads a message's literal: into memory when small, streamed to
// the object store when large. It fills Size, SHA256 and Object. A message
// that is no mail (its kind is returned, see mailscan.NotMail, told from
// its first bytes) is read through for its hash but neither kept nor
// stored.
func (fx *folderExtraction) readBody(ctx context.Context, rec *record.Message, lit imap.LiteralReader) ([]byte, string, error) {
	size := lit.Size()
	rec.Size = size
	lit = &watchedLiteral{LiteralReader: lit, failed: &fx.litFailed}
	sums := mailscan.NewSums()
	defer func() { rec.SHA256, rec.LinesSHA256 = sums.Hex() }()
	if size <= fx.svc.Settings.LargeMessageBytes {
		b := make([]byte, size)
		if _, err := io.ReadFull(lit, b); err != nil {
			return nil, "", fmt.Errorf("read body: %w", err)
		}
		sums.Write(b)
		if kind := mailscan.NotMail(b); kind != "" {
			return nil, kind, nil
		}
		return b, "", nil
	}
	head := make([]byte, min(size, mailscan.NotMailHeadBytes))
	if _, err := io.ReadFull(lit, head); err != nil {
		return nil, "", fmt.Errorf("read body: %w", err)
	}
	sums.Write(head)
	if kind := mailscan.NotMail(head); kind != "" {
		if _, err := io.Copy(sums, lit); err != nil {
			return nil, "", fmt.Errorf("read body: %w", err)
		}
		return nil, kind, nil
	}
	name := objectName(rec)
	// Chunks of half the broker's largest message instead of nats.go's
	// 128 KiB: a quarter of the publishes and acks for the same bytes.
	meta := jetstream.ObjectMeta{Name: name, Opts: &jetstream.ObjectMetaOptions{ChunkSize: bodyChunkBytes}}
	_, err := fx.svc.Broker.Bodies.Put(ctx, meta, io.MultiReader(bytes.NewReader(head), io.TeeReader(lit, sums)))
	if err == nil {
		exact, _ := sums.Hex()
		err = fx.checkStored(ctx, name, size, exact)
	}
	if err != nil {
		return nil, "", fmt.Errorf("store large body (%d bytes): %w", size, err)
	}
	rec.Object = name
	return nil, "", nil
}

// publishNotMail publishes the record of a message that is no mail, kind
// (mailscan.NotMail): without a body, so that the loader appends nothing
// and only passes its UID in the folder's PrevUID chain, and the
// checkpoint passes it like any message. The item is logged and listed
// in the end record, by folder, UID, kind and size; verify classifies
// alike and lists it as not mail, not copied.
func (fx *folderExtraction) publishNotMail(ctx context.Context, rec *record.Message, kind string, anchor Anchor) error {
	rec.NotMail = kind
	if err := fx.pub.publish(ctx, rec, nil, anchor); err != nil {
		return err
	}
	fx.prev = rec.UID
	fx.notMail = append(fx.notMail, record.NotMailItem{Folder: rec.Folder, UIDValidity: rec.UIDValidity, UID: rec.UID,
		Kind: kind, Size: rec.Size, SHA256: rec.SHA256})
	fx.log.Warn().Uint32("uid", rec.UID).Str("kind", kind).Int64("size", rec.Size).
		Msg("not mail, not copied: a bare " + kind + " item, no mail header (MailEnable keeps contacts, calendar and tasks beside the mail)")
	return nil
}

// checkStored reads a large body just stored back from the object store
// and compares it with what was read from the source: its size and its
// SHA-256. nats.go's Put can store other bytes than it read, and say
// nothing: its chunks carry no message id, so a chunk whose
// acknowledgement was lost and that is published again is stored twice;
// and a chunk it publishes again after a "no responders" answer (a leader
// election) is sent from the one message it reuses for every chunk, by
// then holding a later chunk's bytes. Either way the body would read back
// wrong for every loader that tries it. Reading it back costs a second
// transfer of each large body (a minority of the mail); a body that does
// not read back right is deleted, no record names it, and the extraction
// fails, to be taken again from the checkpoint under a new object name.
func (fx *folderExtraction) checkStored(ctx context.Context, name string, size int64, sha256Hex string) error {
	if fx.svc.Broker.Embedded() {
		// The server runs in this process, reached without a network:
		// no election, no lost acknowledgement, no "no responders" while
		// this process lives. The check would cost the 600 MB benchmark
		// 2 s, 8 CPU-s and 250 MiB for nothing.
		return nil
	}
	err := fx.readBack(ctx, name, size, sha256Hex)
	if err == nil {
		return nil
	}
	// No record names the object yet: whatever made the check fail, a
	// retry stores the body again under another name.
	if derr := fx.svc.Broker.Bodies.Delete(ctx, name); derr != nil && !errors.Is(derr, jetstream.ErrObjectNotFound) {
		fx.log.Warn().Err(derr).Str("object", name).Msg("delete a large body that did not read back as stored")
	}
	if errors.Is(err, errStoredWrong) {
		fx.log.Warn().Err(err).Str("object", name).Msg("large body did not read back as read from the source (stored wrong, or served by a replica still catching up): deleted, the folder is extracted again from its checkpoint")
	}
	return err
}

// readBack reads object name and compares it with size and sha256Hex. A
// difference is errStoredWrong; other errors are failures to read. It
// reads the chunks one at a time by direct gets (next message on the
// object's chunk subject), so at most one chunk is held: the object
// store's own reader runs a consumer that fills the client's buffers with
// the whole body at once (measured: +280 MiB and +8 CPU-s over the 600 MB
// benchmark with four mailboxes at once).
func (fx *folderExtraction) readBack(ctx context.Context, name string, size int64, sha256Hex string) error {
	info, err := fx.svc.Broker.Bodies.GetInfo(ctx, name)
	if err != nil {
		return fmt.Errorf("read the stored body back: %w", err)
	}
	st, err := fx.svc.Broker.JS.Stream(ctx, "OBJ_"+broker.StoreBodies)
	if err != nil {
		return fmt.Errorf("read the stored body back: %w", err)
	}
	subj := "$O." + broker.StoreBodies + ".C." + info.NUID
	h := sha256.New()
	var n int64
	var chunks uint32
	for seq := uint64(1); ; chunks++ {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return fmt.Errorf("read the stored body back: %w", err)
		}
		h.Write(m.Data)
		n += int64(len(m.Data))
		seq = m.Sequence + 1
	}
	switch {
	case n != size || chunks != info.Chunks:
		return fmt.Errorf("%w: %s reads back %d bytes in %d chunks, %d bytes were read from the source, %d chunks recorded", errStoredWrong, name, n, chunks, size, info.Chunks)
	case hex.EncodeToString(h.Sum(nil)) != sha256Hex:
		return fmt.Errorf("%w: %s reads back with another SHA-256 than the source's", errStoredWrong, name)
	}
	return nil
}

// errStoredWrong is a large body that reads back from the object store
// other than it was read from the source.
var errStoredWrong = errors.New("large body stored wrong")

// bodyChunkBytes is the object store's chunk size for large bodies: half
// of the 1 MiB max_payload the embedded server sets and a NATS server's
// default, leaving room for headers.
const bodyChunkBytes = 512 << 10

// objectName names a large body by mailbox, folder, numbering and a
// per-process sequence: the UID may arrive after the body in a FETCH
// response, and a re-extraction simply overwrites a new name.
func objectName(rec *record.Message) string {
	return fmt.Sprintf("%s/%s/%s/%d", subject.Key(rec.Mailbox), subject.Key(rec.Folder), subject.Numbering(rec.UIDValidity, rec.Epoch), time.Now().UnixNano())
}

// keepFlags drops \Recent, which is session state and never copied.
func keepFlags(in []imap.Flag) []string {
	out := make([]string, 0, len(in))
	for _, f := range in {
		if strings.EqualFold(string(f), `\Recent`) {
			continue
		}
		out = append(out, string(f))
	}
	return out
}

// watchedLiteral notes a failed read of a literal.
type watchedLiteral struct {
	imap.LiteralReader
	failed *bool
}

func (w *watchedLiteral) Read(p []byte) (int, error) {
	n, err := w.LiteralReader.Read(p)
	if err != nil && err != io.EOF {
		*w.failed = true
	}
	return n, err
}
