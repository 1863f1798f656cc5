package tracker

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkServerAnnounce measures one re-announce in a swarm of 10,000
// peers through ServeHTTP: query parsing, the swarm update, a 50-peer
// sample and the bencoded reply. The parallel variant spreads the load
// over 8 swarms, the way per-swarm locks are meant to be used.
func BenchmarkServerAnnounce(b *testing.B) {
	for _, swarms := range []int{1, 8} {
		b.Run(fmt.Sprintf("swarms=%d", swarms), func(b *testing.B) {
			s := NewServer(ServerConfig{Interval: time.Hour})
			defer s.Close()
			const peers = 10_000
			queries := make([]string, peers)
			for i := range peers {
				queries[i] = "/announce?" + announceParams{hash: hashN(i % swarms), peer: peerN(i), port: 1 + i%60000, left: int64((i / swarms) % 2)}.query()
				req := httptest.NewRequest(http.MethodGet, queries[i], nil)
				req.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:1", i>>16, (i>>8)&255, i&255)
				s.ServeHTTP(httptest.NewRecorder(), req)
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(next.Add(1)) % peers
					req := httptest.NewRequest(http.MethodGet, queries[i], nil)
					req.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:1", i>>16, (i>>8)&255, i&255)
					rec := httptest.NewRecorder()
					s.ServeHTTP(rec, req)
					if rec.Body.Len() < 50*6 {
						b.Fatalf("short reply: %q", rec.Body)
					}
				}
			})
		})
	}
}
