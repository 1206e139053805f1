package web

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// client is the address of the request's client, as the sign-in service
// takes it ("unknown" when there is none). Behind a trusted proxy, it is
// the rightmost untrusted address of X-Forwarded-For.
func (s *Server) client(r *http.Request) string {
	addr := s.clientAddr(r)
	if !addr.IsValid() {
		return "unknown"
	}
	return addr.Unmap().String()
}

func (s *Server) clientAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	if !s.trusted(addr) {
		return addr
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			// A malformed hop cannot be attributed: stop at the last proxy.
			return addr
		}
		if !s.trusted(hop) {
			return hop
		}
		addr = hop
	}
	return addr
}

func (s *Server) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
