package main

import (
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/terms"
)

// A peer uses the certificate `account register` saved only if it is its
// key's, from the torrent's provider and good for another day; otherwise
// it registers again.
func TestSavedCertificateIsUsedOnlyWhenValid(t *testing.T) {
	gen := func() *identity.PrivateKey {
		k, err := identity.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	provider, other, key := gen(), gen(), gen()
	now := time.Now()
	tests := []struct {
		name   string
		issuer *identity.PrivateKey
		holder *identity.PrivateKey
		expiry time.Time
		write  bool
		want   bool
	}{
		{name: "valid for a week", issuer: provider, holder: key, expiry: now.Add(7 * 24 * time.Hour), write: true, want: true},
		{name: "none saved", write: false},
		{name: "another key's", issuer: provider, holder: other, expiry: now.Add(7 * 24 * time.Hour), write: true},
		{name: "from another provider", issuer: other, holder: key, expiry: now.Add(7 * 24 * time.Hour), write: true},
		{name: "expiring within the day", issuer: provider, holder: key, expiry: now.Add(time.Hour), write: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keyPath := filepath.Join(t.TempDir(), "peer.key")
			if tc.write {
				c, err := identity.IssueCertificate(tc.issuer, tc.holder.Public(), tc.holder.AccountID(), now.Add(-time.Minute), tc.expiry)
				if err != nil {
					t.Fatal(err)
				}
				if err := identity.WriteCertificateFile(certPath(keyPath), c); err != nil {
					t.Fatal(err)
				}
			}
			ps := paidSetup{terms: &terms.Terms{Provider: provider.Public()}, key: key, keyPath: keyPath}
			if got := ps.savedCertificate(); (got != nil) != tc.want {
				t.Fatalf("savedCertificate = %v, want a certificate: %v", got, tc.want)
			}
		})
	}
	if c := (paidSetup{}).savedCertificate(); c != nil {
		t.Fatalf("a plain torrent got certificate %v", c)
	}
}
