package extractor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailferry/mailferry/shared/imapdial"
)

// anchorReader reads, from the folder a resume examined, what renumbered
// compares with a checkpoint's anchors.
type anchorReader interface {
	// sizes returns the RFC822.SIZE of those of uids the folder holds.
	sizes(ctx context.Context, uids []uint32) (map[uint32]int64, error)
	// sha256 returns the hex SHA-256 of the message at uid.
	sha256(ctx context.Context, uid uint32) (string, error)
}

// renumbered says why a folder's checkpoint cp (same UIDVALIDITY as the
// folder now) no longer names the messages it did, "" when it still
// does. uidNext is the folder's UIDNEXT now (0: not known).
//
// A folder is renumbered when its UIDNEXT went backwards (a server that
// forgot its UIDs starts over from what it holds), or when the newest of
// the checkpoint's anchors the folder still holds at its UID is another
// message: another RFC822.SIZE, or the same size and another SHA-256. The
// body is read (into a hash, never held) only when the size matches.
//
// A message at LastUID that is merely gone is no renumbering: people
// delete mail, the newest first as often as not, and taking every such
// folder for renumbered would read it again in full on each pass. The
// next anchor down then decides. Only when none of the anchors is left
// (the last few messages all deleted, or every UID moved) is the folder
// taken for renumbered: a full read again, matched by content at the
// loader, costs time but can neither lose nor duplicate a message,
// whereas resuming after a renumbering could do both. A renumbering that
// left the newest remaining anchor at its very UID and UIDNEXT where it
// was is not seen; MailEnable's rebuild numbers a folder from 1 again,
// which moves UIDNEXT back unless more mail arrived than was ever deleted.
//
// A checkpoint written before anchors existed is taken at its word.
func renumbered(ctx context.Context, cp Checkpoint, uidNext uint32, r anchorReader) (string, error) {
	if uidNext != 0 && cp.UIDNext != 0 && uidNext < cp.UIDNext {
		return fmt.Sprintf("UIDNEXT went backwards from %d to %d", cp.UIDNext, uidNext), nil
	}
	if cp.LastUID == 0 || len(cp.Anchors) == 0 {
		return "", nil
	}
	uids := make([]uint32, 0, len(cp.Anchors))
	for _, a := range cp.Anchors {
		uids = append(uids, a.UID)
	}
	sizes, err := r.sizes(ctx, uids)
	if err != nil {
		return "", err
	}
	for _, a := range cp.Anchors {
		size, ok := sizes[a.UID]
		if !ok {
			continue // deleted: the next one down decides
		}
		if a.Size != 0 && size != a.Size { // 0: the server sent none
			return fmt.Sprintf("uid %d holds a message of %d bytes, the checkpointed one had %d", a.UID, size, a.Size), nil
		}
		sum, err := r.sha256(ctx, a.UID)
		if err != nil {
			return "", err
		}
		if sum != a.SHA256 {
			return fmt.Sprintf("uid %d holds another message of the same size as the checkpointed one (other SHA-256)", a.UID), nil
		}
		return "", nil
	}
	names := make([]string, 0, len(uids))
	for _, u := range uids {
		names = append(names, fmt.Sprint(u))
	}
	return fmt.Sprintf("none of the last checkpointed messages (uid %s) is there any more", strings.Join(names, ", ")), nil
}

// sizes fetches the RFC822.SIZE of uids (UID FETCH ... RFC822.SIZE: no
// SEARCH, which old MailEnable versions crashed on).
func (fx *folderExtraction) sizes(ctx context.Context, uids []uint32) (map[uint32]int64, error) {
	set := imap.UIDSet{}
	for _, u := range uids {
		set.AddNum(imap.UID(u))
	}
	wd := imapdial.Watch(ctx, fx.c, fx.svc.Config.Source.CommandTimeout.Std())
	defer wd.Stop()
	msgs, err := fx.c.Fetch(set, &imap.FetchOptions{UID: true, RFC822Size: true}).Collect()
	if err != nil {
		return nil, fmt.Errorf("uid fetch %s rfc822.size: %w", set, wd.Err(err))
	}
	out := make(map[uint32]int64, len(msgs))
	for _, m := range msgs {
		if m.UID != 0 {
			out[uint32(m.UID)] = m.RFC822Size
		}
	}
	return out, nil
}

// sha256 streams the message at uid into a hash (BODY.PEEK[]: the
// \Seen flag stays as it is).
func (fx *folderExtraction) sha256(ctx context.Context, uid uint32) (string, error) {
	wd := imapdial.Watch(ctx, fx.c, fx.svc.Config.Source.CommandTimeout.Std())
	defer wd.Stop()
	cmd := fx.c.Fetch(imap.UIDSetNum(imap.UID(uid)), &imap.FetchOptions{
		UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	})
	var sum string
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		for item := msg.Next(); item != nil; item = msg.Next() {
			it, ok := item.(imapclient.FetchItemDataBodySection)
			if !ok || it.Literal == nil {
				continue
			}
			h := sha256.New()
			if _, err := io.Copy(h, &kicking{r: it.Literal, wd: wd}); err != nil {
				// go-imap must not read the failed literal again, as
				// draining would: leave the connection, a retry
				// reconnects.
				imapdial.Abort(fx.c)
				return "", fmt.Errorf("read uid %d to hash it: %w", uid, wd.Err(err))
			}
			sum = hex.EncodeToString(h.Sum(nil))
		}
	}
	if err := cmd.Close(); err != nil {
		return "", fmt.Errorf("uid fetch %d body.peek[]: %w", uid, wd.Err(err))
	}
	if sum == "" {
		return "", fmt.Errorf("uid fetch %d body.peek[]: the server sent no body", uid)
	}
	return sum, nil
}

// kicking tells a watchdog of every read that made progress.
type kicking struct {
	r  io.Reader
	wd *imapdial.Watchdog
}

func (k *kicking) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	if n > 0 {
		k.wd.Kick()
	}
	return n, err
}
