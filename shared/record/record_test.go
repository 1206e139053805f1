package record

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestMessageRecordRoundTripsExactBytes(t *testing.T) {
	body := []byte("From: a@b\r\nSubject: x\r\n\r\nbody\x00\xff\n.\r\n")
	m := &Message{Mailbox: "a@b.c", Folder: "Entwürfe/2010", Delim: "/", UIDValidity: 7, UID: 9,
		Flags: []string{`\Seen`, "$Label1"}, InternalDate: time.Date(2010, 1, 2, 3, 4, 5, 0, time.FixedZone("", 3600)),
		Size: int64(len(body)), SHA256: "ab"}
	n, err := MessageMsg(m, body)
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Header.Get(nats.MsgIdHdr); got != "a@b%2Ec.Entw%C3%BCrfe%2F2010.7.9" {
		t.Errorf("Nats-Msg-Id = %q", got)
	}
	if n.Subject != "mf.mail.a@b%2Ec.m.Entw%C3%BCrfe%2F2010" {
		t.Errorf("subject = %q", n.Subject)
	}
	d, err := Decode(n.Header, n.Data)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.Body, body) || d.Message.Folder != m.Folder || !d.Message.InternalDate.Equal(m.InternalDate) || len(d.Message.Flags) != 2 {
		t.Errorf("decoded %+v", d.Message)
	}
}

func TestANotMailRecordCarriesNoBodyButTheItemsSize(t *testing.T) {
	n, err := MessageMsg(&Message{Mailbox: "a", Folder: "Contacts", UIDValidity: 1, UID: 3, Size: 412, SHA256: "cd", NotMail: "contact"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Decode(n.Header, n.Data)
	if err != nil || len(d.Body) != 0 || d.Message.NotMail != "contact" || d.Message.Size != 412 {
		t.Fatalf("decoded %+v, %v", d.Message, err)
	}
}

func TestDecodeRejectsTruncatedBodyAndUnknownKinds(t *testing.T) {
	n, _ := MessageMsg(&Message{Mailbox: "a", Folder: "INBOX", Size: 10}, []byte("short"))
	if _, err := Decode(n.Header, n.Data); err == nil || !strings.Contains(err.Error(), "record says 10") {
		t.Errorf("truncated body: err = %v", err)
	}
	h := nats.Header{}
	h.Set(HeaderVersion, "1")
	h.Set(HeaderKind, "bogus")
	if _, err := Decode(h, nil); err == nil {
		t.Error("unknown kind accepted")
	}
	h.Set(HeaderVersion, "99")
	if _, err := Decode(h, nil); err == nil {
		t.Error("future version accepted")
	}
}

func TestFolderAndEndRecordsRoundTrip(t *testing.T) {
	f, _ := FolderMsg(&Folder{Mailbox: "a", Name: "Sent Items", Attrs: []string{`\Sent`}, UIDValidity: 3, Pass: "p1"})
	d, err := Decode(f.Header, f.Data)
	if err != nil || d.Folder.Name != "Sent Items" || d.Folder.Attrs[0] != `\Sent` {
		t.Fatalf("folder: %+v %v", d, err)
	}
	e, _ := EndMsg(&End{Mailbox: "a", Pass: "p1", Messages: 3})
	d, err = Decode(e.Header, e.Data)
	if err != nil || d.End.Messages != 3 || e.Header.Get(nats.MsgIdHdr) != "end.a.p1" {
		t.Fatalf("end: %+v %v", d, err)
	}
}

func TestRenumberedFolderRecordsCarryTheirEpochAndEpochZeroKeepsOldIDs(t *testing.T) {
	tests := []struct {
		epoch             uint32
		wantID, wantFolID string
		wantEpochInJSON   bool
	}{
		{0, "a.INBOX.7.9", "folder.a.INBOX.7.p1", false},
		{2, "a.INBOX.7-e2.9", "folder.a.INBOX.7-e2.p1", true},
	}
	for _, tt := range tests {
		n, err := MessageMsg(&Message{Mailbox: "a", Folder: "INBOX", UIDValidity: 7, Epoch: tt.epoch, UID: 9}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := n.Header.Get(nats.MsgIdHdr); got != tt.wantID {
			t.Errorf("epoch %d: message Nats-Msg-Id = %q, want %q", tt.epoch, got, tt.wantID)
		}
		if got := strings.Contains(n.Header.Get(HeaderMeta), `"epoch"`); got != tt.wantEpochInJSON {
			t.Errorf("epoch %d: meta %s", tt.epoch, n.Header.Get(HeaderMeta))
		}
		d, err := Decode(n.Header, n.Data)
		if err != nil || d.Message.Epoch != tt.epoch {
			t.Errorf("epoch %d: decoded %+v, %v", tt.epoch, d, err)
		}
		f, _ := FolderMsg(&Folder{Mailbox: "a", Name: "INBOX", UIDValidity: 7, Epoch: tt.epoch, Pass: "p1"})
		if got := f.Header.Get(nats.MsgIdHdr); got != tt.wantFolID {
			t.Errorf("epoch %d: folder Nats-Msg-Id = %q, want %q", tt.epoch, got, tt.wantFolID)
		}
		if d, err := Decode(f.Header, f.Data); err != nil || d.Folder.Epoch != tt.epoch {
			t.Errorf("epoch %d: decoded folder %+v, %v", tt.epoch, d, err)
		}
	}
}
