package broker

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/hashchain"
)

// End-to-end benchmarks: signed HTTP requests over loopback into a server
// on an SQLite ledger, the same path a payee's redemption takes in
// production. They report operations per second.

// BenchmarkRedeemHTTP redeems one chain element per operation, from
// parallel payees each working through its own channels.
func BenchmarkRedeemHTTP(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	payer := e.registered(1, 1<<50)
	var next atomic.Int32
	const length = 20_000
	// Many payees redeem at once in production; eight in flight per core
	// keeps the server, not the client's round trips, the bottleneck.
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		n := next.Add(1)
		payee := e.registered(byte(10+n), 0)
		var (
			ch     *hashchain.Chain
			id     string
			idx    int64
			opened int
		)
		for pb.Next() {
			if ch == nil || idx == length {
				ch = chain(byte(n), length)
				open, err := payer.OpenChannel(ctx, fmt.Sprintf("b-%d-%d", n, opened), OpenRequest{Payee: payee.Account(), Root: ch.Root(), Length: length, Unit: 1, Expiry: time.Now().Add(time.Hour)})
				if err != nil {
					b.Error(err)
					return
				}
				id, idx = open.Channel.ID, 0
				opened++
			}
			idx++
			p, err := ch.Preimage(idx)
			if err != nil {
				b.Error(err)
				return
			}
			if r, err := payee.Redeem(ctx, id, idx, p); err != nil || r.Paid != 1 {
				b.Errorf("redeem: %+v %v", r, err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "redeems/s")
}

// BenchmarkOpenHTTP opens one channel per operation from parallel payers.
func BenchmarkOpenHTTP(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	payee := e.registered(2, 0)
	root := chain(1, 1).Root()
	var next atomic.Int32
	// Many payees redeem at once in production; eight in flight per core
	// keeps the server, not the client's round trips, the bottleneck.
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		n := next.Add(1)
		payer := e.registered(byte(100+n), 1<<50)
		i := 0
		for pb.Next() {
			i++
			_, err := payer.OpenChannel(ctx, fmt.Sprintf("o-%d", i), OpenRequest{Payee: payee.Account(), Root: root, Length: 100, Unit: 1, Expiry: time.Now().Add(time.Hour)})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "opens/s")
}

// BenchmarkSettleHTTP is a paid session's exit: every operation is one
// channel opened, then redeemed and closed in batches of 16 channels per
// request, as a payee settles when it stops. It reports channels settled
// per second (the open included).
func BenchmarkSettleHTTP(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	payer := e.registered(1, 1<<50)
	payee := e.registered(2, 0)
	const length, batch = 100, 16
	ch := chain(1, length)
	pre, err := ch.Preimage(length / 2)
	if err != nil {
		b.Fatal(err)
	}
	var rs []Redemption
	b.ResetTimer()
	for i := range b.N {
		// The limiter runs on the test clock: 3 ms a channel refills the
		// two tokens it takes (an open and a share of a redemption call).
		e.clock.Advance(3 * time.Millisecond)
		open, err := payer.OpenChannel(ctx, fmt.Sprintf("s-%d", i), OpenRequest{Payee: payee.Account(), Root: ch.Root(), Length: length, Unit: 1, Expiry: time.Now().Add(time.Hour)})
		if err != nil {
			b.Fatal(err)
		}
		rs = append(rs, Redemption{Channel: open.Channel.ID, Index: length / 2, Preimage: pre, Close: true})
		if len(rs) == batch || i == b.N-1 {
			got, err := payee.Redemptions(ctx, rs)
			if err != nil {
				b.Fatal(err)
			}
			for _, g := range got {
				if g.Error != nil || !g.Closed {
					b.Fatalf("settle: %+v", g)
				}
			}
			rs = rs[:0]
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "channels/s")
}
