package dnsctl

import (
	"github.com/mailferry/mailferry/shared/event"
)

// CutoverRequested is the type of the event that asks the service to
// switch a domain now (`mailferry dns cutover`), whatever
// switch_on_provisioned says. Its key is the domain.
const CutoverRequested = event.DNSCutoverRequested

// The data of dnsctl's events, defined in shared/event so that other
// services read them without this package.
type (
	SwitchedData   = event.DNSSwitchedData
	SkippedData    = event.DNSSkippedData
	FailedData     = event.DNSFailedData
	RolledBackData = event.DNSRolledBackData
)

// TTLRestoredData is the data of dns.ttl_restored.
type TTLRestoredData = event.DNSTTLRestoredData
