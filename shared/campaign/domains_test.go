package campaign_test

import (
	"testing"

	"github.com/mailferry/mailferry/shared/campaign"
	"github.com/mailferry/mailferry/shared/event"
	"github.com/mailferry/mailferry/shared/job"
)

// postOffice is a MailEnable login of the post office "company", the
// mailbox of anna@acme.test at the target.
const postOffice = "anna@company"

func postOfficeDomains() campaign.Domains {
	return campaign.NewDomains([]job.Mailbox{
		{SourceUser: "Anna@Company", TargetUser: "anna@ACME.test."},
		{SourceUser: mbA, TargetUser: mbA},
	})
}

func TestDomainsNameAMailboxByTheDomainOfItsTarget(t *testing.T) {
	ds := postOfficeDomains()
	tests := []struct {
		name    string
		ds      campaign.Domains
		mailbox string
		want    string
	}{
		{"a post office's login", ds, postOffice, dom},
		{"a login whose domain is its target's", ds, mbA, dom},
		{"a mailbox not in the inventory", ds, "x@Other.test", "other.test"},
		{"no inventory", nil, postOffice, "company"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ds.Of(tt.mailbox); got != tt.want {
				t.Errorf("Of(%q) = %q, want %q", tt.mailbox, got, tt.want)
			}
		})
	}
}

func TestFromEventMapsAPostOfficeMailboxToItsTargetsDomain(t *testing.T) {
	e, err := event.Loaded(postOffice, event.LoadedData{Pass: prestage(1), Appended: 3}).Envelope("test", sent)
	if err != nil {
		t.Fatal(err)
	}
	f, domain, err := campaign.FromEvent(e, postOfficeDomains())
	if err != nil {
		t.Fatal(err)
	}
	if want := (campaign.MailboxLoaded{Mailbox: postOffice, Pass: prestage(1), Counts: campaign.Counts{Appended: 3}}); f != want || domain != dom {
		t.Errorf("FromEvent = %+v, %q; want %+v, %q", f, domain, want, dom)
	}
}

func TestNewDomainTakesAPostOfficeMailboxOfItsDomain(t *testing.T) {
	d, err := campaign.NewDomain(dom, []string{postOffice, mbA}, postOfficeDomains(), "", 0, nil, t0)
	if err != nil || len(d.Mailboxes) != 2 {
		t.Fatalf("NewDomain = %+v, %v; want both mailboxes", d.Mailboxes, err)
	}
	if _, err := campaign.NewDomain("company", []string{postOffice}, postOfficeDomains(), "", 0, nil, t0); err == nil {
		t.Error("NewDomain put anna@company in the post office's name, not its mail domain's")
	}
}

func TestAPostOfficeMailboxsEventsMoveTheRecordsOfItsTargetsDomain(t *testing.T) {
	ctx := testContext(t)
	s := campaign.NewStore(bucket(t))
	s.Domains = postOfficeDomains()
	d, err := campaign.NewDomain(dom, []string{postOffice}, s.Domains, "", 0, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Add(ctx, d); err != nil {
		t.Fatal(err)
	}
	e, err := event.Loaded(postOffice, event.LoadedData{Pass: prestage(1), Appended: 3}).Envelope("test", sent)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyEvent(ctx, e); err != nil {
		t.Fatal(err)
	}
	boxes, err := s.Mailboxes(ctx, dom)
	if err != nil || len(boxes) != 1 || boxes[0].Mailbox != postOffice || boxes[0].Domain != dom || boxes[0].Counts.Appended != 3 {
		t.Fatalf("mailboxes of %s: %+v, %v; want anna@company loaded", dom, boxes, err)
	}
	if err := s.PutCheck(ctx, campaign.Check{Mailbox: postOffice, Pass: prestage(1), OK: true}); err != nil {
		t.Fatal(err)
	}
	if c, ok, err := s.Check(ctx, dom, postOffice); err != nil || !ok || !c.OK {
		t.Errorf("check of anna@company in %s: %+v, %v, %v", dom, c, ok, err)
	}
}
