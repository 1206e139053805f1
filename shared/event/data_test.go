package event_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/record"
)

var (
	t0 = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	t1 = time.Date(2026, 11, 29, 10, 5, 0, 0, time.UTC)
)

// payloads has one event of every type, with the data as it was written
// before the data were typed (JSON literals taken from stored events), so
// both the round trip and the decoding of old events are checked.
var payloads = []struct {
	name string
	out  event.Outgoing
	// old is the data as stored by earlier code.
	old string
}{
	{"queued", event.Queued("a@old.test", "p1"), `{"pass":"p1"}`},
	{"extracting", event.Extracting("a@old.test", "p1"), `{"pass":"p1"}`},
	{"extracted", event.Extracted("a@old.test", &event.ExtractedData{Mailbox: "a@old.test", TargetUser: "a@new.test", Pass: "p1",
		Folders:  []record.FolderSummary{{Name: "INBOX", UIDValidity: 7, Messages: 3, Bytes: 300, Total: 3}},
		Messages: 3, Bytes: 300, Started: t0, Finished: t1, Problems: []string{"Junk: NO [SERVERBUG]"}}),
		`{"mailbox":"a@old.test","target_user":"a@new.test","pass":"p1","folders":[{"name":"INBOX","uidvalidity":7,"messages":3,"bytes":300,"total":3}],"messages":3,"bytes":300,"started":"2026-11-29T10:00:00Z","finished":"2026-11-29T10:05:00Z","problems":["Junk: NO [SERVERBUG]"]}`},
	{"loaded", event.Loaded("a@old.test", event.LoadedData{Pass: "p1", Appended: 2, Skipped: 1, Dead: 1, Bytes: 300, TargetUser: "a@new.test"}),
		`{"pass":"p1","appended":2,"skipped":1,"dead":1,"bytes":300,"target_user":"a@new.test"}`},
	// The digest is new: the old literal has none.
	{"verified", event.Verified("a@old.test", event.VerifiedData{Pass: "p1", Messages: 3}), `{"messages":3,"pass":"p1"}`},
	// The outcome is new too: a verification that found differences.
	{"verified with differences", event.Verified("a@old.test", event.VerifiedData{Pass: "p1", Messages: 3, Digest: "d", Differences: 2, Missing: 1}),
		`{"pass":"p1","messages":3,"digest":"d","differences":2,"missing":1}`},
	{"failed", event.Failed("a@old.test", 2, event.FailedData{Pass: "p1", Phase: event.PhaseLoading, Reason: "target down", Retried: true}),
		`{"pass":"p1","phase":"loading","reason":"target down","retried":true}`},
	{"superseded", event.Superseded("a@old.test", event.SupersededData{Pass: "p1", By: "p2", Phase: event.PhaseExtracting}),
		`{"pass":"p1","by":"p2","phase":"extracting"}`},
	{"renamed", event.Renamed("a@old.test", event.RenamedData{Source: "A/B", Target: "A.B", Reason: "delimiter"}),
		`{"source":"A/B","target":"A.B","reason":"delimiter"}`},
	{"dead-lettered", event.DeadLettered("a@old.test", event.DeadLetteredData{ID: "INBOX/7/3", Mailbox: "a@old.test", TargetUser: "a@new.test",
		Folder: "INBOX", TargetFolder: "INBOX", UIDValidity: 7, UID: 3, Size: 100, SHA256: "ab", StreamSeq: 42,
		Response: "a1 NO [LIMIT] too big", Code: "LIMIT", Reason: "too big", Time: t0}),
		`{"id":"INBOX/7/3","mailbox":"a@old.test","target_user":"a@new.test","folder":"INBOX","target_folder":"INBOX","uidvalidity":7,"uid":3,"size":100,"sha256":"ab","stream_seq":42,"response":"a1 NO [LIMIT] too big","code":"LIMIT","reason":"too big","time":"2026-11-29T10:00:00Z"}`},
	{"altered", event.Altered("a@old.test", event.AlteredData{ID: "INBOX/7/4", Folder: "INBOX", TargetFolder: "INBOX", UID: 4, TargetUID: 9,
		Size: 10, StoredSize: 11, SHA256: "ab", StoredSHA256: "cd", Risks: "line-endings"}),
		`{"id":"INBOX/7/4","folder":"INBOX","target_folder":"INBOX","uid":4,"target_uid":9,"size":10,"stored_size":11,"sha256":"ab","stored_sha256":"cd","risks":"line-endings"}`},
	{"mailbox provisioned", event.ProvisionedMailbox(event.MailboxProvisionedData{Email: "a@new.test", Domain: "new.test", Provider: "dovecot"}),
		`{"email":"a@new.test","domain":"new.test","provider":"dovecot"}`},
	{"domain provisioned", event.ProvisionedDomain(event.DomainProvisionedData{Domain: "new.test", Mailboxes: 2, Provider: "dovecot"}),
		`{"domain":"new.test","mailboxes":2,"provider":"dovecot"}`},
	{"password updated", event.PasswordUpdated(event.PasswordUpdatedData{Email: "a@new.test", Role: "user", Provider: "dovecot"}, t0),
		`{"email":"a@new.test","role":"user","provider":"dovecot"}`},
	{"cutover requested", event.CutoverRequested("new.test.", t0), `{}`},
	{"switched", event.Switched("new.test.", event.DNSSwitchedData{Serial: 7, OldTTL: 3600, OldTTLExpiresAt: t1, VerifiedAt: t0,
		Servers: []string{"127.0.0.1:53"}, PlanID: "plan1"}),
		`{"serial":7,"old_ttl":3600,"old_ttl_expires_at":"2026-11-29T10:05:00Z","verified_at":"2026-11-29T10:00:00Z","servers":["127.0.0.1:53"],"plan_id":"plan1"}`},
	{"skipped", event.SwitchSkipped("new.test.", 7, event.DNSSkippedData{Code: "already_switched", Reason: "serves the new records"}),
		`{"code":"already_switched","reason":"serves the new records"}`},
	{"dns failed", event.SwitchFailed("new.test.", t0, event.DNSFailedData{Phase: "apply", Reason: "REFUSED"}),
		`{"phase":"apply","reason":"REFUSED"}`},
	{"rolled back", event.RolledBack("new.test.", event.DNSRolledBackData{Serial: 8, RolledBackAt: t1}),
		`{"serial":8,"rolled_back_at":"2026-11-29T10:05:00Z"}`},
}

// dataType is the type an event's data decodes into.
func dataType(o event.Outgoing) reflect.Type {
	t := reflect.TypeOf(o.Data)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func TestEveryPayloadSurvivesTheEnvelopeRoundTrip(t *testing.T) {
	for _, p := range payloads {
		t.Run(p.name, func(t *testing.T) {
			e, err := p.out.Envelope("test", t0)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			got, err := event.Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if got.Type != p.out.Type || got.Key != p.out.Key || got.ID != p.out.ID || got.Version != event.Version || !got.Time.Equal(t0) {
				t.Errorf("envelope = %+v, want type %s key %s id %s", got, p.out.Type, p.out.Key, p.out.ID)
			}
			d := reflect.New(dataType(p.out))
			if err := got.DataAs(d.Interface()); err != nil {
				t.Fatal(err)
			}
			want := reflect.Indirect(reflect.ValueOf(p.out.Data)).Interface()
			if !reflect.DeepEqual(d.Elem().Interface(), want) {
				t.Errorf("data = %+v, want %+v", d.Elem().Interface(), want)
			}
		})
	}
}

func TestDataWrittenBeforeTheTypesExistedStillDecodes(t *testing.T) {
	for _, p := range payloads {
		t.Run(p.name, func(t *testing.T) {
			d := reflect.New(dataType(p.out))
			dec := json.NewDecoder(strings.NewReader(p.old))
			dec.DisallowUnknownFields() // every stored field still has its place
			if err := dec.Decode(d.Interface()); err != nil {
				t.Fatalf("decode %s: %v", p.old, err)
			}
			want := reflect.Indirect(reflect.ValueOf(p.out.Data)).Interface()
			if !reflect.DeepEqual(d.Elem().Interface(), want) {
				t.Errorf("old data %s decodes to %+v, want %+v", p.old, d.Elem().Interface(), want)
			}
		})
	}
}

func TestAStoredEnvelopeOfTheCurrentVersionDecodes(t *testing.T) {
	stored := `{"id":"verified.a@old.test.p1.8PHzo3mbw0nVXq2ZuCcmyb","type":"mailbox.verified","version":1,"time":"2026-11-29T10:00:00Z","service":"verify","key":"a@old.test","data":{"messages":3,"pass":"p1"}}`
	e, err := event.Decode([]byte(stored))
	if err != nil {
		t.Fatal(err)
	}
	var d event.VerifiedData
	if err := e.DataAs(&d); err != nil {
		t.Fatal(err)
	}
	if e.Type != event.MailboxVerified || e.Key != "a@old.test" || d != (event.VerifiedData{Pass: "p1", Messages: 3}) {
		t.Errorf("decoded %+v with data %+v", e, d)
	}
}

func TestAnEnvelopeOfAnotherVersionIsRefusedAsUnknown(t *testing.T) {
	for _, v := range []string{`2`, `0`} {
		_, err := event.Decode([]byte(`{"id":"x","type":"mailbox.queued","version":` + v + `,"key":"a","data":{"pass":"p1","new":true}}`))
		if !errors.Is(err, event.ErrUnknownVersion) {
			t.Errorf("version %s: err = %v, want ErrUnknownVersion", v, err)
		}
	}
}

func TestAVerifiedEventWrittenBeforeItCarriedTheOutcomeIsOK(t *testing.T) {
	for _, c := range []struct {
		data string
		ok   bool
	}{
		{`{"messages":3,"pass":"p1"}`, true},
		{`{"pass":"p1","messages":3,"digest":"d"}`, true},
		{`{"pass":"p1","messages":3,"digest":"d","differences":2}`, false},
	} {
		var d event.VerifiedData
		if err := json.Unmarshal([]byte(c.data), &d); err != nil {
			t.Fatal(err)
		}
		if d.OK() != c.ok {
			t.Errorf("%s: OK() = %v, want %v", c.data, d.OK(), c.ok)
		}
	}
}
