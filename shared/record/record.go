// Package record defines the versioned records of the mail stream: a
// folder's description, a message (its exact bytes plus flags and date), and
// the end of one extraction pass over a mailbox.
package record

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mailferry/mailferry/shared/subject"
)

// Version of the record schema written by this code.
const Version = 1

// Headers of a mail record.
const (
	// HeaderKind is folder, message or end.
	HeaderKind = "Mf-Kind"
	// HeaderVersion is the schema version.
	HeaderVersion = "Mf-Version"
	// HeaderMeta holds a message record's metadata as JSON; its body is
	// the message's exact bytes (or empty when Object is set).
	HeaderMeta = "Mf-Meta"
)

// Kinds, as in HeaderKind.
const (
	KindFolder  = "folder"
	KindMessage = "message"
	KindEnd     = "end"
	KindListing = "listing"
)

// Folder describes a source folder; it precedes the folder's messages.
type Folder struct {
	Mailbox     string   `json:"mailbox"`
	TargetUser  string   `json:"target_user"`
	Pass        string   `json:"pass"`
	Name        string   `json:"name"`
	Delim       string   `json:"delim"`
	Attrs       []string `json:"attrs,omitempty"`
	Subscribed  bool     `json:"subscribed"`
	UIDValidity uint32   `json:"uidvalidity"`
	Epoch       uint32   `json:"epoch,omitempty"` // renumberings found under UIDValidity (subject.Numbering)
	UIDNext     uint32   `json:"uidnext"`
	Messages    uint32   `json:"messages"`
	// Prefix is the source's personal namespace prefix ("INBOX."), as
	// NAMESPACE said it, or "": the loader maps a name under it without
	// it (foldermap.Folder.Prefix).
	Prefix string `json:"prefix,omitempty"`
}

// Message is one source message. The body travels as the NATS payload,
// or in the object store under Object when it is large.
type Message struct {
	Mailbox      string    `json:"mailbox"`
	TargetUser   string    `json:"target_user"`
	Pass         string    `json:"pass"`
	Folder       string    `json:"folder"`
	Delim        string    `json:"delim"`
	UIDValidity  uint32    `json:"uidvalidity"`
	Epoch        uint32    `json:"epoch,omitempty"` // the folder's (Folder.Epoch): the numbering UID belongs to
	UID          uint32    `json:"uid"`
	Flags        []string  `json:"flags,omitempty"`
	InternalDate time.Time `json:"internal_date"`
	Size         int64     `json:"size"`
	SHA256       string    `json:"sha256"`
	// LinesSHA256 is the SHA-256 with line endings normalised to CRLF:
	// it recognises the message in a target that rewrote them.
	LinesSHA256 string `json:"lines_sha256,omitempty"`
	// PrevUID is the UID of the message fetched just before this one in
	// the folder (or the checkpoint it resumed from): no message lay
	// between the two on the source. The loader moves its watermark along
	// this chain, so a record that reaches the stream out of order is
	// never taken for one already loaded.
	PrevUID uint32 `json:"prev_uid,omitempty"`
	Object  string `json:"object,omitempty"`
	// NotMail, when set, says the source message is no mail but an item
	// of that kind (mailscan.NotMail: a contact, an event, a task, …):
	// the record carries no body (Size and the hashes are the item's),
	// the loader appends nothing and only closes the PrevUID chain over
	// its UID, and the end record lists it.
	NotMail string `json:"not_mail,omitempty"`
}

// ID is the message's source identity.
func (m *Message) ID() string {
	return subject.SourceID(m.Mailbox, m.Folder, m.UIDValidity, m.Epoch, m.UID)
}

// Listing is every folder of the source mailbox as LISTed at the start of
// a pass, so that the loader maps the whole tree at once (collisions
// between mapped names can only be seen with all names).
type Listing struct {
	Mailbox    string   `json:"mailbox"`
	TargetUser string   `json:"target_user"`
	Pass       string   `json:"pass"`
	Folders    []Folder `json:"folders"`
}

// ListingMsg encodes l.
func ListingMsg(l *Listing) (*nats.Msg, error) {
	body, err := json.Marshal(l)
	if err != nil {
		return nil, fmt.Errorf("encode listing record: %w", err)
	}
	m := nats.NewMsg(subject.Listing(l.Mailbox))
	m.Header.Set(HeaderKind, KindListing)
	m.Header.Set(HeaderVersion, strconv.Itoa(Version))
	m.Header.Set(nats.MsgIdHdr, "listing."+subject.Token(l.Mailbox)+"."+l.Pass)
	m.Data = body
	return m, nil
}

// FolderSummary counts what one pass extracted from a folder.
type FolderSummary struct {
	Name        string `json:"name"`
	UIDValidity uint32 `json:"uidvalidity"`
	Epoch       uint32 `json:"epoch,omitempty"` // the folder's (Folder.Epoch)
	Messages    int64  `json:"messages"`
	Bytes       int64  `json:"bytes"`
	// Total is what the folder held at the time (checkpointed ones too).
	Total uint32 `json:"total"`
}

// End closes one extraction pass over a mailbox; it is also the manifest.
type End struct {
	Mailbox    string          `json:"mailbox"`
	TargetUser string          `json:"target_user"`
	Pass       string          `json:"pass"`
	Folders    []FolderSummary `json:"folders"`
	Messages   int64           `json:"messages"`
	Bytes      int64           `json:"bytes"`
	Started    time.Time       `json:"started"`
	Finished   time.Time       `json:"finished"`
	// Problems names what could not be extracted, with the reason.
	Problems []string `json:"problems,omitempty"`
	// NotMail are the source messages of this pass that are no mail
	// (see Message.NotMail): reported here, not copied.
	NotMail []NotMailItem `json:"not_mail,omitempty"`
}

// NotMailItem names a source message that is no mail, as a person finds
// it: folder, UID, what it is and its size.
type NotMailItem struct {
	Folder      string `json:"folder"`
	UIDValidity uint32 `json:"uidvalidity"`
	UID         uint32 `json:"uid"`
	// Kind is what it is (mailscan.NotMail): contact, event, task, …
	Kind   string `json:"kind"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// FolderMsg encodes f as a NATS message.
func FolderMsg(f *Folder) (*nats.Msg, error) {
	body, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("encode folder record: %w", err)
	}
	m := nats.NewMsg(subject.Folder(f.Mailbox, f.Name))
	m.Header.Set(HeaderKind, KindFolder)
	m.Header.Set(HeaderVersion, strconv.Itoa(Version))
	m.Header.Set(nats.MsgIdHdr, "folder."+subject.Token(f.Mailbox)+"."+subject.Token(f.Name)+"."+subject.Numbering(f.UIDValidity, f.Epoch)+"."+f.Pass)
	m.Data = body
	return m, nil
}

// MessageMsg encodes m with body (nil when m.Object is set).
func MessageMsg(m *Message, body []byte) (*nats.Msg, error) {
	meta, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode message record: %w", err)
	}
	n := nats.NewMsg(subject.Message(m.Mailbox, m.Folder))
	n.Header.Set(HeaderKind, KindMessage)
	n.Header.Set(HeaderVersion, strconv.Itoa(Version))
	n.Header.Set(HeaderMeta, string(meta))
	n.Header.Set(nats.MsgIdHdr, m.ID())
	n.Data = body
	return n, nil
}

// EndMsg encodes e.
func EndMsg(e *End) (*nats.Msg, error) {
	body, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode end record: %w", err)
	}
	m := nats.NewMsg(subject.End(e.Mailbox, e.Pass))
	m.Header.Set(HeaderKind, KindEnd)
	m.Header.Set(HeaderVersion, strconv.Itoa(Version))
	m.Header.Set(nats.MsgIdHdr, "end."+subject.Token(e.Mailbox)+"."+e.Pass)
	m.Data = body
	return m, nil
}

// Decoded is one decoded record: exactly one of Listing, Folder, Message,
// End is set.
// Body aliases the NATS payload for a message record.
type Decoded struct {
	Listing *Listing
	Folder  *Folder
	Message *Message
	End     *End
	Body    []byte
}

// Decode decodes a mail record from its headers and payload.
func Decode(h nats.Header, data []byte) (*Decoded, error) {
	if v := h.Get(HeaderVersion); v != strconv.Itoa(Version) {
		return nil, fmt.Errorf("decode record: unsupported version %q", v)
	}
	d := &Decoded{}
	var err error
	switch k := h.Get(HeaderKind); k {
	case KindFolder:
		d.Folder = &Folder{}
		err = json.Unmarshal(data, d.Folder)
	case KindListing:
		d.Listing = &Listing{}
		err = json.Unmarshal(data, d.Listing)
	case KindEnd:
		d.End = &End{}
		err = json.Unmarshal(data, d.End)
	case KindMessage:
		d.Message = &Message{}
		err = json.Unmarshal([]byte(h.Get(HeaderMeta)), d.Message)
		d.Body = data
		if err == nil && d.Message.Object == "" && d.Message.NotMail == "" && int64(len(data)) != d.Message.Size {
			err = fmt.Errorf("body is %d bytes, record says %d", len(data), d.Message.Size)
		}
	default:
		return nil, fmt.Errorf("decode record: unknown kind %q", k)
	}
	if err != nil {
		return nil, fmt.Errorf("decode %s record: %w", h.Get(HeaderKind), err)
	}
	return d, nil
}
