package authdns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/miekg/dns"

	"github.com/mailferry/mailferry/services/dnsctl/records"
)

// maxChain bounds CNAME chains followed when resolving a host.
const maxChain = 8

// Reader reads snapshots of domains from one authoritative server. Hosts
// outside a domain (the provider's MX hosts, shared by thousands of
// domains) are resolved once per Reader.
type Reader struct {
	Client *Client
	Server string
	// HostLabels name mail hosts below each domain ("mail").
	HostLabels []string
	// SRVNames are the SRV owners below each domain ("_imaps._tcp").
	SRVNames []string

	mu      sync.Mutex
	foreign map[string]*records.Host
}

// Snapshot reads domain's SOA, NS, MX, apex TXT, SRV and mail hosts.
func (r *Reader) Snapshot(ctx context.Context, domain string) (*records.Snapshot, error) {
	domain = dns.CanonicalName(domain)
	s := &records.Snapshot{Domain: domain, Server: r.Server, Hosts: map[string]*records.Host{}}
	var err error
	if s.SOA, err = r.Client.RRset(ctx, r.Server, domain, dns.TypeSOA); err != nil {
		return nil, err
	}
	if s.Serial, err = serialOf(s.SOA, r.Server); err != nil {
		return nil, err
	}
	for _, q := range []struct {
		dst *records.RRset
		typ uint16
	}{{&s.NS, dns.TypeNS}, {&s.MX, dns.TypeMX}, {&s.TXT, dns.TypeTXT}} {
		if *q.dst, err = r.Client.RRset(ctx, r.Server, domain, q.typ); err != nil {
			return nil, err
		}
	}
	for _, n := range r.SRVNames {
		srv, err := r.Client.RRset(ctx, r.Server, n+"."+domain, dns.TypeSRV)
		if err != nil {
			return nil, err
		}
		s.SRV = append(s.SRV, srv)
	}
	return s, r.readHosts(ctx, s)
}

func (r *Reader) readHosts(ctx context.Context, s *records.Snapshot) error {
	names := make([]string, 0, len(r.HostLabels)+len(s.MX.Data))
	for _, l := range r.HostLabels {
		names = append(names, dns.CanonicalName(l+"."+s.Domain))
	}
	mxs, err := s.MX.RRs()
	if err != nil {
		return err
	}
	for _, rr := range mxs {
		names = append(names, dns.CanonicalName(rr.(*dns.MX).Mx))
	}
	for _, n := range names {
		if _, ok := s.Hosts[n]; ok {
			continue
		}
		h, err := r.host(ctx, s.Domain, n)
		if err != nil {
			return err
		}
		s.Hosts[n] = h
	}
	return nil
}

func (r *Reader) host(ctx context.Context, domain, name string) (*records.Host, error) {
	if records.InZone(name, domain) {
		return r.resolve(ctx, domain, name)
	}
	r.mu.Lock()
	h, ok := r.foreign[name]
	r.mu.Unlock()
	if ok {
		return h, nil
	}
	h, err := r.resolve(ctx, domain, name)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.foreign == nil {
		r.foreign = map[string]*records.Host{}
	}
	r.foreign[name] = h
	r.mu.Unlock()
	return h, nil
}

// resolve reads name's own CNAME, A and AAAA RRsets and follows a CNAME
// chain as far as the server answers authoritatively.
func (r *Reader) resolve(ctx context.Context, domain, name string) (*records.Host, error) {
	h := &records.Host{Name: name, InZone: records.InZone(name, domain), Target: name}
	h.CNAME, h.A, h.AAAA = records.Empty(name, dns.TypeCNAME), records.Empty(name, dns.TypeA), records.Empty(name, dns.TypeAAAA)
	for hop := 0; ; hop++ {
		if hop == maxChain {
			return nil, fmt.Errorf("resolve %s: CNAME chain longer than %d", name, maxChain)
		}
		m, err := r.Client.Query(ctx, r.Server, h.Target, dns.TypeA)
		if errors.Is(err, ErrNotAuthoritative) && (hop > 0 || !h.InZone) {
			return h, nil // a name the server does not serve: known by name only
		}
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", name, err)
		}
		cname := records.FromRRs(h.Target, dns.TypeCNAME, m.Answer)
		if hop == 0 {
			h.CNAME = cname
		}
		if cname.Exists() {
			h.Target = dns.CanonicalName(strings.Fields(cname.Data[0])[0])
			continue
		}
		a, aaaa := records.FromRRs(h.Target, dns.TypeA, m.Answer), records.Empty(h.Target, dns.TypeAAAA)
		if m.Rcode != dns.RcodeNameError {
			if aaaa, err = r.Client.RRset(ctx, r.Server, h.Target, dns.TypeAAAA); err != nil {
				return nil, fmt.Errorf("resolve %s: %w", name, err)
			}
		}
		if hop == 0 {
			h.A, h.AAAA = a, aaaa
		}
		h.Resolved = true
		h.Addrs = append(addrs(a), addrs(aaaa)...)
		return h, nil
	}
}

func addrs(s records.RRset) []netip.Addr {
	out := make([]netip.Addr, 0, len(s.Data))
	for _, d := range s.Data {
		if a, err := netip.ParseAddr(d); err == nil {
			out = append(out, a)
		}
	}
	return out
}
