package event_test

import (
	"testing"

	"github.com/mailferry/mailferry/shared/event"
)

// The ids are those earlier code made by hand (the verified one excepted,
// which ended in a random id), so that an event republished across an
// upgrade is still dropped as a duplicate.
func TestEveryEventHasItsDeterministicID(t *testing.T) {
	want := map[string]string{
		"queued":              "queued.a@old.test.p1",
		"extracting":          "extracting.a@old.test.p1",
		"extracted":           "extracted.a@old.test.p1",
		"loaded":              "loaded.a@old.test.p1",
		"verified":            "verified.a@old.test.p1.",
		"failed":              "failed.loading.a@old.test.p1.2",
		"superseded":          "superseded.extracting.a@old.test.p1",
		"renamed":             "renamed.a@old.test.A/B",
		"dead-lettered":       "dead.INBOX/7/3",
		"altered":             "altered.INBOX/7/4",
		"mailbox provisioned": "mailbox.provisioned:a@new.test",
		"domain provisioned":  "domain.provisioned:new.test",
		"password updated":    "user.password.updated:a@new.test:1795946400000000000",
		"cutover requested":   "dns.cutover_requested:new.test:1795946400000000000",
		"switched":            "dns.switched:new.test:7",
		"skipped":             "dns.skipped:new.test:already_switched:7",
		"dns failed":          "dns.failed:new.test:apply:1795946400000000000",
		"rolled back":         "dns.rolled_back:new.test:8",
	}
	// Another outcome has another digest, hence another id.
	want["verified with differences"] = "verified.a@old.test.p1.d"
	seen := map[string]string{}
	for _, p := range payloads {
		w, ok := want[p.name]
		if !ok {
			t.Errorf("%s: no id expected", p.name)
			continue
		}
		if p.out.ID != w {
			t.Errorf("%s: id %q, want %q", p.name, p.out.ID, w)
		}
		if other, dup := seen[p.out.ID]; dup {
			t.Errorf("%s and %s share id %q", p.name, other, p.out.ID)
		}
		seen[p.out.ID] = p.name
		if p.out.Type == event.DNSSwitched && p.out.Key != "new.test" {
			t.Errorf("%s: key %q keeps the final dot", p.name, p.out.Key)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("%d events checked, %d ids expected", len(seen), len(want))
	}
}

func TestTheSameFactMakesTheSameIDAndAnotherFactAnother(t *testing.T) {
	verified := func(pass, digest string) event.Outgoing {
		return event.Verified("a@old.test", event.VerifiedData{Pass: pass, Messages: 3, Digest: digest})
	}
	failed := func(phase string, attempt uint64, retried bool) event.Outgoing {
		return event.Failed("a@old.test", attempt, event.FailedData{Pass: "p1", Phase: phase, Reason: "down", Retried: retried})
	}
	for _, c := range []struct {
		name string
		a, b event.Outgoing
		same bool
	}{
		{"a verification repeated with the same result", verified("p1", "d1"), verified("p1", "d1"), true},
		{"a re-verification that found something else", verified("p1", "d1"), verified("p1", "d2"), false},
		{"the verification of another pass", verified("p1", "d1"), verified("p2", "d1"), false},
		{"a failure published again for the same delivery", failed(event.PhaseLoading, 2, true), failed(event.PhaseLoading, 2, true), true},
		{"the failure of the next delivery", failed(event.PhaseLoading, 2, true), failed(event.PhaseLoading, 3, false), false},
		{"the extractor's and the loader's failure", failed(event.PhaseExtracting, 2, true), failed(event.PhaseLoading, 2, true), false},
		{"a loaded event with other counts (a retried publish)", event.Loaded("a", event.LoadedData{Pass: "p1", Appended: 1}), event.Loaded("a", event.LoadedData{Pass: "p1", Appended: 2}), true},
		{"two mailboxes loaded in one pass", event.Loaded("a", event.LoadedData{Pass: "p1"}), event.Loaded("b", event.LoadedData{Pass: "p1"}), false},
		{"the extractor and the loader superseded", event.Superseded("a", event.SupersededData{Pass: "p1", By: "p2", Phase: event.PhaseExtracting}),
			event.Superseded("a", event.SupersededData{Pass: "p1", By: "p2", Phase: event.PhaseLoading}), false},
		{"two password changes", event.PasswordUpdated(event.PasswordUpdatedData{Email: "a"}, t0), event.PasswordUpdated(event.PasswordUpdatedData{Email: "a"}, t1), false},
		{"a switch verified again", event.Switched("d.test.", event.DNSSwitchedData{Serial: 7}), event.Switched("d.test", event.DNSSwitchedData{Serial: 7, VerifiedAt: t1}), true},
		{"a switch at another serial", event.Switched("d.test", event.DNSSwitchedData{Serial: 7}), event.Switched("d.test", event.DNSSwitchedData{Serial: 8}), false},
		{"a skip for another reason", event.SwitchSkipped("d.test", 7, event.DNSSkippedData{Code: "a"}), event.SwitchSkipped("d.test", 7, event.DNSSkippedData{Code: "b"}), false},
		{"two cutover requests", event.CutoverRequested("d.test", t0), event.CutoverRequested("d.test", t1), false},
	} {
		if got := c.a.ID == c.b.ID; got != c.same {
			t.Errorf("%s: ids %q and %q, want same=%t", c.name, c.a.ID, c.b.ID, c.same)
		}
	}
}
