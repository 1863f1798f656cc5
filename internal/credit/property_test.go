package credit

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"testing"
	"time"
)

// TestInvariantsUnderRandomUse drives a Book with random, well-behaved
// engine calls (a block is sent only when MayServe says Serve) interleaved
// with payments, forgiveness, blocks and restarts, and checks after every
// step what the credit rules promise:
//
//   - Exposure equals the sum of every unblocked account's value at risk;
//   - no account's unpaid value exceeds its window plus one block;
//   - the unpaid value of all unblocked accounts stays within MaxExposure
//     plus one block, and that of fresh ones within MaxFreshExposure plus
//     one block;
//   - a restart changes nothing but the overdue clocks.
func TestInvariantsUnderRandomUse(t *testing.T) {
	cfg := testConfig()
	cfg.MaxExposure = 200
	cfg.MaxFreshExposure = 60
	prices := []int64{0, 1, 30, 1000}
	sizes := []int64{1, 1000, block, 4 * block}
	const maxBlockValue = 4 * block * 1000 // in 2^-20 units
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			b := newBook(t, cfg)
			now := t0
			accounts := make([]string, 12)
			for i := range accounts {
				accounts[i] = fmt.Sprint("acct", i)
			}
			var maxExp int64 // to show that the caps were actually reached
			for step := range 3000 {
				acct := accounts[rng.IntN(len(accounts))]
				now = now.Add(time.Duration(rng.IntN(1000)) * time.Millisecond)
				switch op := rng.IntN(100); {
				case op < 70:
					size, p := sizes[rng.IntN(len(sizes))], prices[rng.IntN(len(prices))]
					if b.MayServe(acct, size, p, now) == Serve {
						if err := b.Served(acct, size, p, now); err != nil {
							t.Fatal(err)
						}
					}
				case op < 90:
					pay(t, b, acct, rng.Int64N(5), now)
				case op < 95:
					b.Forgive(acct, sizes[rng.IntN(len(sizes))], prices[rng.IntN(len(prices))])
				case op < 97:
					if err := b.Block(acct); err != nil {
						t.Fatal(err)
					}
				default:
					data, err := b.Snapshot()
					if err != nil {
						t.Fatal(err)
					}
					r, err := Restore(cfg, data, now)
					if err != nil {
						t.Fatal(err)
					}
					for _, a := range b.Accounts() {
						got, want := r.Status(a), b.Status(a)
						if got.Owed != want.Owed || got.AtRisk != want.AtRisk || got.Paid != want.Paid || got.Blocked != want.Blocked || got.Resends != want.Resends {
							t.Fatalf("step %d: %s restored as %+v, was %+v", step, a, got, want)
						}
					}
					b = r
				}
				checkInvariants(t, b, cfg, maxBlockValue, step)
				maxExp = max(maxExp, b.Exposure())
			}
			if maxExp < cfg.MaxExposure {
				t.Fatalf("exposure peaked at %d; the run never reached the cap of %d", maxExp, cfg.MaxExposure)
			}
		})
	}
}

func checkInvariants(t *testing.T, b *Book, cfg Config, maxBlockValue int64, step int) {
	t.Helper()
	var risk, fresh u128
	mib := big.NewInt(MiB)
	totalValue, freshValue := new(big.Int), new(big.Int)
	for name, a := range b.accounts {
		if u, st := b.Unpaid(name), b.Status(name); u != st.Unpaid {
			t.Fatalf("step %d: %s: Unpaid %d, Status says %d", step, name, u, st.Unpaid)
		}
		if a.blocked {
			continue
		}
		risk.add(a.risk())
		// Exact unpaid value in 2^-20 units: served value less payments.
		v := new(big.Int).Mul(big.NewInt(a.served.units), mib)
		v.Add(v, new(big.Int).SetUint64(a.served.frac))
		v.Sub(v, new(big.Int).Mul(big.NewInt(a.paid), mib))
		limit := new(big.Int).Mul(big.NewInt(cfg.window(a.paid)), mib)
		limit.Add(limit, big.NewInt(maxBlockValue))
		if v.Cmp(limit) > 0 {
			t.Fatalf("step %d: %s owes %v/2^20 units, window %d plus a block", step, name, v, cfg.window(a.paid))
		}
		if v.Sign() > 0 {
			totalValue.Add(totalValue, v)
			if a.paid == 0 {
				fresh.add(a.risk())
				freshValue.Add(freshValue, v)
			}
		}
	}
	if risk.int64() != b.Exposure() || fresh != b.freshExposure {
		t.Fatalf("step %d: exposure %d (fresh %d), accounts sum to %d (%d)", step, b.Exposure(), b.freshExposure.int64(), risk.int64(), fresh.int64())
	}
	for _, c := range []struct {
		value *big.Int
		cap   int64
	}{{totalValue, cfg.MaxExposure}, {freshValue, cfg.MaxFreshExposure}} {
		limit := new(big.Int).Mul(big.NewInt(c.cap), mib)
		limit.Add(limit, big.NewInt(maxBlockValue))
		if c.value.Cmp(limit) > 0 {
			t.Fatalf("step %d: %v/2^20 units unpaid, cap %d plus a block", step, c.value, c.cap)
		}
	}
}
