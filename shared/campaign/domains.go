package campaign

import (
	"strings"

	"github.com/mailferry/mailferry/shared/job"
)

// Domains maps a source mailbox (the key of its events) to its campaign
// domain: the mail domain of its target user. A MailEnable login is
// mailbox@postoffice and a post office may be named otherwise than its
// mail domain, so the source login's domain is not always one in DNS.
type Domains map[string]string

// NewDomains is the campaign domains of the inventory's mailboxes.
func NewDomains(boxes []job.Mailbox) Domains {
	ds := make(Domains, len(boxes))
	for _, mb := range boxes {
		ds[strings.ToLower(mb.SourceUser)] = MailDomainOf(mb)
	}
	return ds
}

// MailDomainOf is the campaign domain of an inventory mailbox: the domain
// of its target user (of its source one when it names none).
func MailDomainOf(mb job.Mailbox) string {
	if mb.TargetUser == "" {
		return DomainOf(mb.SourceUser)
	}
	return DomainOf(mb.TargetUser)
}

// Of is the campaign domain of a source mailbox; the domain of its
// address for a mailbox the inventory does not have (or a nil Domains).
func (ds Domains) Of(mailbox string) string {
	if d, ok := ds[strings.ToLower(mailbox)]; ok {
		return d
	}
	return DomainOf(mailbox)
}
