package tracker

import (
	"net/netip"
	"net/url"
	"testing"
)

// FuzzParseAnnounceResponse checks that no tracker reply, however broken,
// makes the client panic, and that what it accepts is usable.
func FuzzParseAnnounceResponse(f *testing.F) {
	f.Add([]byte("d8:intervali1800e5:peers6:\x7f\x00\x00\x01\x1a\xe1e"))
	f.Add([]byte("d14:failure reason6:denied8:retry ini5ee"))
	f.Fuzz(func(t *testing.T, body []byte) {
		_, _ = ParseScrapeResponse(body)
		resp, err := ParseAnnounceResponse(body)
		if err != nil {
			if resp != nil {
				t.Fatal("response and error together")
			}
			return
		}
		if resp.Interval < 0 || resp.MinInterval < 0 || resp.Complete < -1 || resp.Incomplete < -1 {
			t.Fatalf("negative values accepted: %+v", resp)
		}
		for _, p := range resp.Peers {
			if !p.IsValid() || p.Port() == 0 || p.Addr().IsUnspecified() || p.Addr().Is4In6() {
				t.Fatalf("unusable peer %v accepted", p)
			}
		}
	})
}

// FuzzParseAnnounceQuery checks that no query string makes the server
// panic, that what it accepts is valid, and that the client's encoding of
// an accepted announce parses back to the same announce.
func FuzzParseAnnounceQuery(f *testing.F) {
	f.Add("info_hash=%00%01%02%03%04%05%06%07%08%09%0A%0B%0C%0D%0E%0F%10%11%12%13&peer_id=-FG0001-000000000001&port=6881&uploaded=0&downloaded=0&left=100&event=started&compact=1", "10.0.0.1")
	f.Add("info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=0&ip=127.0.0.9&fg_class=gold", "127.0.0.1")
	f.Fuzz(func(t *testing.T, raw, remote string) {
		ip, err := netip.ParseAddr(remote)
		if err != nil {
			ip = netip.MustParseAddr("192.0.2.1")
		}
		q, err := ParseAnnounceQuery(raw, ip)
		if err != nil {
			return
		}
		if q.Addr.Port() == 0 || !q.Addr.Addr().IsValid() || q.Addr.Addr().Is4In6() {
			t.Fatalf("bad address %v accepted", q.Addr)
		}
		if q.Left < 0 || q.Uploaded < 0 || q.Downloaded < 0 || q.NumWant < 0 {
			t.Fatalf("negative values accepted: %+v", q)
		}
		if !ip.Unmap().IsLoopback() && q.Addr.Addr() != ip.Unmap() {
			t.Fatalf("remote %v could set its address to %v", ip, q.Addr)
		}
		for k := range q.Extra {
			if standardParams[k] {
				t.Fatalf("standard parameter %q in Extra", k)
			}
		}
		req := AnnounceRequest{
			InfoHash: q.InfoHash, PeerID: q.PeerID, Port: q.Addr.Port(),
			Uploaded: q.Uploaded, Downloaded: q.Downloaded, Left: q.Left,
			Event: q.Event, NumWant: q.NumWant, Extra: q.Extra,
		}
		enc, err := req.encode()
		if err != nil {
			t.Fatalf("client cannot encode an announce the server accepted: %v", err)
		}
		if len(enc) > maxQueryBytes {
			return
		}
		q2, err := ParseAnnounceQuery(enc, ip)
		if err != nil {
			t.Fatalf("re-encoded announce %q rejected: %v", enc, err)
		}
		if q2.InfoHash != q.InfoHash || q2.PeerID != q.PeerID || q2.Addr.Port() != q.Addr.Port() ||
			q2.Left != q.Left || q2.Uploaded != q.Uploaded || q2.Downloaded != q.Downloaded ||
			q2.Event != q.Event || q2.NumWant != q.NumWant || !equalValues(q2.Extra, q.Extra) {
			t.Fatalf("round trip changed the announce:\n%+v\n%+v", q, q2)
		}
	})
}

func equalValues(a, b url.Values) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb := b[k]
		if len(va) != len(vb) {
			return false
		}
		for i := range va {
			if va[i] != vb[i] {
				return false
			}
		}
	}
	return true
}
