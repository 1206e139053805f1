package loader

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailferry/mailferry/shared/kvjson"
	"github.com/mailferry/mailferry/shared/subject"
)

// The ledger is the loader's memory in a key-value bucket, updated by
// revision (compare-and-set) so a second loader racing on one mailbox
// fails instead of corrupting it:
//
//	mbx.<mailbox>                          MailboxState
//	fld.<mailbox>.<folder>.<numbering>     FolderState
//	map.<mailbox>.<folder>.<numbering>.<uid>
//	                                       Mapping (one per committed batch,
//	                                       keyed by its first source UID)
//
// <numbering> is subject.Numbering: the source folder's UIDVALIDITY, and
// "-e<epoch>" after it once the extractor found the folder renumbered
// under that UIDVALIDITY ("1234", "1234-e1"). A renumbered folder is a
// folder the ledger never saw: it is matched by content against the
// target folder, whose copies of it keep their entries under the older
// numbering.

// MailboxState is where a mailbox's stream has been processed to, and the
// folder names chosen for it (kept stable across passes).
type MailboxState struct {
	// Seq is the last mail-stream sequence whose effects are committed.
	Seq     uint64            `json:"seq"`
	Folders map[string]string `json:"folders"`
	// Delims remembers each source folder's delimiter for resumes.
	Delims map[string]string `json:"delims,omitempty"`
	// Subscribed source folders.
	Subscribed map[string]bool `json:"subscribed,omitempty"`
	// LoadedPass is the last pass whose end record was reached.
	LoadedPass string    `json:"loaded_pass,omitempty"`
	Updated    time.Time `json:"updated"`
}

// FolderState is the exactly-once record of one source folder (under one
// UIDVALIDITY and epoch): every source UID up to LastUID is in the target
// (or dead-lettered), and Pending, when set, is an append that may or may
// not have happened and must be reconciled against the target before
// anything else.
type FolderState struct {
	Target            string `json:"target"`
	TargetUIDValidity uint32 `json:"target_uidvalidity"`
	LastUID           uint32 `json:"last_uid"`
	// Done lists messages above LastUID already dealt with whose chain
	// of PrevUIDs does not reach LastUID yet (a record that came out of
	// order, a partial failure, a replay of later mail).
	Done          []DoneItem `json:"done,omitempty"`
	LastTargetUID uint32     `json:"last_target_uid"`
	Appended      int64      `json:"appended"`
	Present       int64      `json:"present"`
	Dead          int64      `json:"dead"`
	// Loaded and LoadedBytes count the folder's source messages in the
	// target (appended or found present), each once however often a
	// replay deals with it again, and a dead letter once a retry loads
	// it: the running total `mailferry status` reads. Appended and
	// Present count what each pass did. Both are 0 for what was
	// recorded before they existed.
	Loaded      int64 `json:"loaded,omitempty"`
	LoadedBytes int64 `json:"loaded_bytes,omitempty"`
	// NotMail counts the folder's source messages that are no mail
	// (record.Message.NotMail), passed and not appended, each once.
	NotMail int64   `json:"not_mail,omitempty"`
	Pending *Intent `json:"pending,omitempty"`
	// Matching is set when the folder's load began by matching content
	// against a target folder that held mail already (a folder renumbered
	// under the same UIDVALIDITY, a new UIDVALIDITY, a lost ledger), until
	// the end record of a pass that extracted the whole folder is loaded:
	// until then messages that may be copies already there can come, and
	// a session that resumes the folder indexes the target again.
	Matching bool `json:"matching,omitempty"`
}

// DoneItem is a message dealt with beyond the watermark.
type DoneItem struct {
	UID  uint32 `json:"uid"`
	Prev uint32 `json:"prev"`
}

// Intent is an append about to be sent: the target's UIDNEXT before it and
// the messages in order. After a crash, target messages from UIDNext on
// whose content matches the items, in order, are the ones that made it.
type Intent struct {
	UIDNext uint32       `json:"uidnext"`
	Items   []IntentItem `json:"items"`
	Started time.Time    `json:"started"`
}

// IntentItem is one message of an Intent.
type IntentItem struct {
	UID         uint32 `json:"uid"`
	Prev        uint32 `json:"prev"`
	SHA256      string `json:"sha256"`
	LinesSHA256 string `json:"lines_sha256,omitempty"`
	// LooseSHA256 is the hash of the message's loose form (see
	// mailscan.LooseSHA256) when it holds bytes servers are known to
	// rewrite, so that content matching recognises such a copy.
	LooseSHA256 string `json:"loose_sha256,omitempty"`
	Size        int64  `json:"size"`
}

// Mapping records where a committed batch of source messages landed: one
// ledger write per batch rather than per message.
type Mapping struct {
	// Folder is the source folder, UIDValidity its UIDVALIDITY (also in
	// the key; absent from entries written before it was added).
	Folder            string `json:"folder"`
	UIDValidity       uint32 `json:"uidvalidity,omitempty"`
	Epoch             uint32 `json:"epoch,omitempty"` // the folder's numbering under UIDValidity (also in the key)
	TargetFolder      string `json:"target_folder"`
	TargetUIDValidity uint32 `json:"target_uidvalidity,omitempty"`
	// How is appended, present (found already in the target) or dead.
	How   string        `json:"how"`
	Items []MappingItem `json:"items"`
}

// MappingItem maps one source UID to its target UID (0 when not appended,
// or appended without the target naming a UID that could be found).
type MappingItem struct {
	UID       uint32 `json:"uid"`
	TargetUID uint32 `json:"target_uid,omitempty"`
	// SHA256 is the source message's.
	SHA256 string `json:"sha256"`
	// StoredSHA256 and StoredSize, when set, say that the target stored
	// the message altered: what its copy at TargetUID hashes to and
	// weighs. verify reports such a pair as one altered message, and
	// content matching against the target looks for this hash.
	StoredSHA256 string `json:"stored_sha256,omitempty"`
	StoredSize   int64  `json:"stored_size,omitempty"`
}

// Stored is the hash of the copy in the target: StoredSHA256 when the
// target altered the message, else SHA256.
func (it MappingItem) Stored() string {
	if it.StoredSHA256 != "" {
		return it.StoredSHA256
	}
	return it.SHA256
}

// MailboxKey, FolderKey and MappingKey name ledger entries.
func MailboxKey(mailbox string) string { return "mbx." + subject.Key(mailbox) }

// FolderKey names a folder's ledger entry: epoch 0 is the key as it was
// before epochs existed.
func FolderKey(mailbox, folder string, uidValidity, epoch uint32) string {
	return fmt.Sprintf("fld.%s.%s.%s", subject.Key(mailbox), subject.Key(folder), subject.Numbering(uidValidity, epoch))
}

// FolderFilter is the key filter of every folder entry of mailbox.
func FolderFilter(mailbox string) string { return "fld." + subject.Key(mailbox) + ".>" }

// MappingKey names the mapping of the batch starting at source UID uid.
func MappingKey(mailbox, folder string, uidValidity, epoch, uid uint32) string {
	return fmt.Sprintf("map.%s.%s.%s.%d", subject.Key(mailbox), subject.Key(folder), subject.Numbering(uidValidity, epoch), uid)
}

// casEntry is a JSON value in the ledger with the revision it was read at.
type casEntry[T any] struct {
	key string
	rev uint64
	V   T
}

func loadEntry[T any](ctx context.Context, kv jetstream.KeyValue, key string) (*casEntry[T], error) {
	e, err := kvjson.Get[T](ctx, kv, key)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	return &casEntry[T]{key: key, rev: e.Rev, V: e.V}, nil
}

// exists reports whether the entry was in the ledger.
func (e *casEntry[T]) exists() bool { return e.rev != 0 }

// save writes the entry if nobody changed it since it was read.
func (e *casEntry[T]) save(ctx context.Context, kv jetstream.KeyValue) error {
	rev, err := kvjson.Write(ctx, kv, e.key, e.V, e.rev)
	if err != nil {
		return fmt.Errorf("ledger (another loader on this mailbox?): %w", err)
	}
	e.rev = rev
	return nil
}

// Landing is where the ledger says one source message was appended.
type Landing struct {
	// Folder and UIDValidity name the source folder, Epoch the numbering
	// UID, the message's, belongs to.
	Folder      string
	UIDValidity uint32
	Epoch       uint32
	UID         uint32
	// TargetFolder, TargetUIDValidity and TargetUID name the copy.
	TargetFolder      string
	TargetUIDValidity uint32
	TargetUID         uint32
	// SHA256 is the source message's hash; StoredSHA256, when set, the
	// hash of the altered copy the target stored.
	SHA256       string
	StoredSHA256 string
	// Renumbered says that the ledger holds mappings of a later epoch of
	// the same folder and UIDVALIDITY: the folder was renumbered since,
	// and UID names no message of it now (the copy still is the copy of
	// a message with SHA256).
	Renumbered bool
}

// Landed reads from the ledger kv where a mailbox's messages were
// appended under a known target UID, for verify to pair a source message
// with the copy the target made of it even when the bytes differ. The
// landings of a folder's older numberings come marked Renumbered.
func Landed(ctx context.Context, kv jetstream.KeyValue, mailbox string) ([]Landing, error) {
	keys, err := kv.ListKeysFiltered(ctx, "map."+subject.Key(mailbox)+".>")
	if err != nil {
		return nil, fmt.Errorf("list ledger mappings of %s: %w", mailbox, err)
	}
	defer keys.Stop()
	var out []Landing
	type numbered struct {
		folder string
		uidv   uint32
	}
	newest := map[numbered]uint32{} // epoch, over mappings of every kind
	for key := range keys.Keys() {
		e, err := kvjson.Get[Mapping](ctx, kv, key)
		if err != nil {
			return nil, fmt.Errorf("ledger: %w", err)
		}
		if !e.Exists() {
			continue // deleted since listed
		}
		m := e.V
		uidv := m.UIDValidity
		if uidv == 0 {
			// Entries from before the field: the key has it,
			// "map.<mailbox>.<folder>.<uidvalidity>.<uid>".
			if parts := strings.Split(key, "."); len(parts) == 5 {
				v, _ := strconv.ParseUint(parts[3], 10, 32)
				uidv = uint32(v)
			}
		}
		if n := (numbered{m.Folder, uidv}); m.Epoch > newest[n] {
			newest[n] = m.Epoch
		}
		if m.How != howAppended {
			continue
		}
		for _, it := range m.Items {
			if it.TargetUID == 0 {
				continue
			}
			out = append(out, Landing{Folder: m.Folder, UIDValidity: uidv, Epoch: m.Epoch, UID: it.UID, TargetFolder: m.TargetFolder,
				TargetUIDValidity: m.TargetUIDValidity, TargetUID: it.TargetUID, SHA256: it.SHA256, StoredSHA256: it.StoredSHA256})
		}
	}
	for i, l := range out {
		out[i].Renumbered = l.Epoch < newest[numbered{l.Folder, l.UIDValidity}]
	}
	return out, nil
}
