package config

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// OpenSRSCluster is where one OpenSRS email cluster is reached.
type OpenSRSCluster struct {
	// URL is the OMA base URL, as documented at
	// https://email.opensrs.guide/docs/sending-requests ("Sending
	// requests": Production Test, Cluster A, Cluster B).
	URL string
	// IMAP is host:port of the cluster's IMAP service (TLS on 993). Not
	// documented per cluster: assumed mail.<cluster>.hostedemail.com by
	// analogy with the documented admin.<cluster>.hostedemail.com (see
	// services/auth/README.md, "OpenSRS"); set target.address to
	// override.
	IMAP string
}

// OpenSRSClusters are the clusters an opensrs.cluster setting names.
var OpenSRSClusters = map[string]OpenSRSCluster{
	"test": {URL: "https://admin.test.hostedemail.com/api", IMAP: "mail.test.hostedemail.com:993"},
	"a":    {URL: "https://admin.a.hostedemail.com/api", IMAP: "mail.a.hostedemail.com:993"},
	"b":    {URL: "https://admin.b.hostedemail.com/api", IMAP: "mail.b.hostedemail.com:993"},
}

// HostCluster returns the cluster a *.<cluster>.hostedemail.com host
// belongs to, or "" for any other host (a white-label name, a test
// server, mail.hostedemail.com), whose cluster cannot be told.
func HostCluster(host string) string {
	rest, ok := strings.CutSuffix(strings.ToLower(strings.TrimSuffix(host, ".")), ".hostedemail.com")
	if !ok {
		return ""
	}
	labels := strings.Split(rest, ".")
	if c := labels[len(labels)-1]; len(labels) >= 2 {
		if _, known := OpenSRSClusters[c]; known {
			return c
		}
	}
	return ""
}

// checkCluster refuses a cluster mailferry does not know, and an OMA URL
// or an IMAP address (host:port) on another cluster's host than the one
// named: mailboxes made on one cluster do not exist on the other, and its
// tokens do not log in there.
func checkCluster(cluster, omaURL, imapAddress string) error {
	if cluster == "" {
		return nil
	}
	if _, ok := OpenSRSClusters[cluster]; !ok {
		return fmt.Errorf("opensrs.cluster %q: want test, a or b", cluster)
	}
	if u, err := url.Parse(omaURL); err == nil {
		if c := HostCluster(u.Hostname()); c != "" && c != cluster {
			return fmt.Errorf("opensrs.url %q is cluster %s's endpoint, not cluster %s's", omaURL, c, cluster)
		}
	}
	if host, _, err := net.SplitHostPort(imapAddress); err == nil {
		if c := HostCluster(host); c != "" && c != cluster {
			return fmt.Errorf("target.address %q is cluster %s's IMAP host, not cluster %s's (opensrs.cluster)", imapAddress, c, cluster)
		}
	}
	return nil
}
