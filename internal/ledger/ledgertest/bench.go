package ledgertest

import (
	"fmt"
	"math"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/hashchain"
	"github.com/floodgate-p2p/floodgate/internal/ledger"
)

// benchParallelism is how many goroutines per GOMAXPROCS the parallel
// benchmarks run, standing in for many concurrent broker requests.
const benchParallelism = 4

// benchConfig allows chains as long as a benchmark needs.
func benchConfig() ledger.Config {
	cfg := testConfig()
	cfg.MaxChainLength = hashchain.MaxLength
	cfg.MaxStep = hashchain.MaxLength
	return cfg
}

// BenchRedeem measures sequential redemptions, one chain step each (the
// most a broker does per redemption in the database), with the fee on.
func BenchRedeem(b *testing.B, open Opener) {
	f := newFixture(b, open, benchConfig())
	f.customer("payer", math.MaxInt64/2)
	f.customer("payee", 0)
	length := int64(max(b.N, 1))
	ch, chain := f.open("bench", "payer", "payee", length, 100, t0.Add(time.Hour))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range int64(b.N) {
		p, err := chain.Preimage(i + 1)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.l.Redeem(f.ctx, ch.ID, i+1, p, t0); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportRate(b, "redemptions/s")
	f.conserved(math.MaxInt64 / 2)
}

// BenchRedeemParallel measures redemptions from many goroutines, each on
// its own channel (different payees redeem different channels at once).
func BenchRedeemParallel(b *testing.B, open Opener) {
	f := newFixture(b, open, benchConfig())
	f.customer("payer", math.MaxInt64/2)
	workers := benchParallelism * gomaxprocs()
	type lane struct {
		id    string
		chain *hashchain.Chain
		next  int64
	}
	lanes := make([]*lane, workers)
	length := int64(max(b.N, 1))
	for w := range lanes {
		payee := ledger.AccountID(fmt.Sprintf("payee%d", w))
		f.customer(payee, 0)
		ch, chain := f.open(fmt.Sprintf("lane%d", w), "payer", payee, length, 100, t0.Add(time.Hour))
		lanes[w] = &lane{id: ch.ID, chain: chain}
	}
	var nextLane atomic.Int64
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ln := lanes[nextLane.Add(1)-1]
		for pb.Next() {
			ln.next++
			p, err := ln.chain.Preimage(ln.next)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := f.l.Redeem(f.ctx, ln.id, ln.next, p, t0); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportRate(b, "redemptions/s")
	f.conserved(math.MaxInt64 / 2)
}

// BenchOpen measures sequential channel opens from one payer.
func BenchOpen(b *testing.B, open Opener) {
	f := newFixture(b, open, benchConfig())
	f.customer("payer", math.MaxInt64/2)
	f.customer("payee", 0)
	root := hashchain.New(seed("open"), 1000).Root()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		_, err := f.l.OpenChannel(f.ctx, fmt.Sprintf("k%d", i), ledger.Channel{
			Payer: "payer", Payee: "payee", Root: root, Length: 1000, Unit: 10, Expiry: t0.Add(time.Hour),
		}, t0)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportRate(b, "opens/s")
	f.conserved(math.MaxInt64 / 2)
}

// BenchOpenParallel measures opens from many goroutines, each for its own
// payer (one payer's opens serialise on its balance by design).
func BenchOpenParallel(b *testing.B, open Opener) {
	f := newFixture(b, open, benchConfig())
	workers := benchParallelism * gomaxprocs()
	f.customer("payee", 0)
	for w := range workers {
		f.customer(ledger.AccountID(fmt.Sprintf("payer%d", w)), math.MaxInt64/int64(2*workers))
	}
	root := hashchain.New(seed("open"), 1000).Root()
	var nextPayer, seq atomic.Int64
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		payer := ledger.AccountID(fmt.Sprintf("payer%d", nextPayer.Add(1)-1))
		for pb.Next() {
			_, err := f.l.OpenChannel(f.ctx, fmt.Sprintf("k%d", seq.Add(1)), ledger.Channel{
				Payer: payer, Payee: "payee", Root: root, Length: 1000, Unit: 10, Expiry: t0.Add(time.Hour),
			}, t0)
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportRate(b, "opens/s")
}

// reportRate adds an operations-per-second metric.
func reportRate(b *testing.B, unit string) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, unit)
	}
}

// gomaxprocs returns the current GOMAXPROCS.
func gomaxprocs() int { return runtime.GOMAXPROCS(0) }
