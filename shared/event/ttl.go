package event

import "time"

// DNSTTLRestored is the type of the event that dnsctl set the TTL of a
// switched domain's mail records back to the long one after the cutover
// (`mailferry dns restore-ttl`, or a campaign). Its key is the domain.
const DNSTTLRestored = "dns.ttl_restored"

// DNSTTLRestoredData is the data of dns.ttl_restored (key: the domain).
type DNSTTLRestoredData struct {
	// Serial is the primary's SOA serial after the update.
	Serial uint32 `json:"serial"`
	// TTL is the TTL set, in seconds; From the longest one before.
	TTL  uint32 `json:"ttl"`
	From uint32 `json:"from"`
	// RestoredAt is when the primary served the new TTL.
	RestoredAt time.Time `json:"restored_at"`
	// Servers are the servers that served it (serial at least Serial)
	// when the event was published.
	Servers []string `json:"servers,omitempty"`
}

// TTLRestored is the event that domain's mail records have the TTL
// d.TTL since serial d.Serial; one per domain and serial.
func TTLRestored(domain string, d DNSTTLRestoredData) Outgoing {
	return dnsEvent(DNSTTLRestored, domain, d, d.Serial)
}
