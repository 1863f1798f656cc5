package paidcli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/floodgate-p2p/floodgate/internal/broker"
	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/metainfo"
	"github.com/floodgate-p2p/floodgate/internal/terms"
	"github.com/floodgate-p2p/floodgate/internal/tracker"
)

const (
	// pricePerMiB is the gold class's price in the test torrents.
	pricePerMiB = 30
	// funds is minted to each downloader: more than the price, so the
	// balances show the money moving, and enough to hold a channel to
	// each of its three uploaders at once even at the largest channel the
	// paid package locks for these torrents (half of what is left to buy:
	// 94 units of the 6 MiB one at 30/MiB).
	funds = 4000
	// pieceLength is the test torrents' piece length.
	pieceLength = 64 << 10
	// lostPerLeaver bounds, in units, what a downloader's payments to one
	// other downloader can fall short because that one exited first: one
	// piece's value, rounded up (see TestPaidSwarmFromCLI).
	lostPerLeaver = (pieceLength*pricePerMiB + 1<<20 - 1) >> 20
)

// provider is a running `floodgate provider`.
type provider struct {
	*proc
	dir     string // the test's working directory
	url     string // http://127.0.0.1:PORT
	dataDir string
}

var listeningRE = regexp.MustCompile(`provider listening on (http://\S+)`)

// startProvider runs a provider on a free port with a short announce
// interval, so peers that start together find each other quickly.
func startProvider(t *testing.T, dir string) *provider {
	t.Helper()
	pv := &provider{dir: dir, dataDir: filepath.Join(dir, "provider")}
	pv.proc = start(t, dir, "provider", "provider", "--listen", "127.0.0.1:0", "--data-dir", pv.dataDir, "--announce-interval", "2s")
	pv.url = pv.waitPrinted(t, listeningRE, 20*time.Second)[1]
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(pv.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return pv
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("provider at %s not healthy: %v", pv.url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (pv *provider) keyPath() string { return filepath.Join(pv.dataDir, "provider.key") }

var accountRE = regexp.MustCompile(`(?m)^account:\s+([0-9a-f]+)$`)

// newAccount makes a key with `account new` and registers it with
// `account register`, returning the key file and the account id.
func (pv *provider) newAccount(t *testing.T, name string) (keyPath, account string) {
	t.Helper()
	keyPath = filepath.Join(pv.dir, "keys", name+".key")
	out := mustFG(t, pv.dir, "account", "new", "--key", keyPath)
	m := accountRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("account new printed no account:\n%s", out)
	}
	out = mustFG(t, pv.dir, "account", "register", "--key", keyPath, "--broker", pv.url)
	if r := accountRE.FindStringSubmatch(out); r == nil || r[1] != m[1] {
		t.Fatalf("account register names another account than account new (%s):\n%s", m[1], out)
	}
	return keyPath, m[1]
}

func (pv *provider) mint(t *testing.T, account string, amount int64) {
	t.Helper()
	out := mustFG(t, pv.dir, "mint", "--provider-key", pv.keyPath(), "--broker", pv.url, account, strconv.FormatInt(amount, 10))
	if !strings.HasPrefix(out, "minted "+strconv.FormatInt(amount, 10)+" to "+account) {
		t.Fatalf("mint printed %q", out)
	}
}

// balance is what `floodgate account balance` prints for the key.
func (pv *provider) balance(t *testing.T, keyPath string) int64 {
	t.Helper()
	out := mustFG(t, pv.dir, "account", "balance", "--key", keyPath, "--broker", pv.url)
	n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		t.Fatalf("account balance printed %q: %v", out, err)
	}
	return n
}

// audit asks the broker, as the provider, whether the ledger balances.
func (pv *provider) audit(t *testing.T) broker.AuditResponse {
	t.Helper()
	key, err := identity.ReadKeyFile(pv.keyPath())
	if err != nil {
		t.Fatal(err)
	}
	c, err := broker.NewClient(broker.ClientConfig{BaseURL: pv.url, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := c.Audit(ctx)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	return a
}

// waitSeeders waits until the provider's tracker counts n seeders of the
// torrent, so downloaders started afterwards find them in their first
// announce.
func (pv *provider) waitSeeders(t *testing.T, ih metainfo.Hash, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := tracker.Scrape(ctx, http.DefaultClient, pv.url+"/announce", [20]byte(ih))
		cancel()
		if err == nil && st[[20]byte(ih)].Complete >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tracker does not list %d seeder(s) of %s: %v %+v", n, ih, err, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeContent writes size random bytes to dir/name.
func writeContent(t *testing.T, dir, name string, size int) []byte {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

// createPaid makes a paid torrent with one class, gold at pricePerMiB,
// announced at the provider's tracker.
func (pv *provider) createPaid(t *testing.T, content, torrent string) *metainfo.MetaInfo {
	t.Helper()
	out := mustFG(t, pv.dir, "create", "--piece-length", strconv.Itoa(pieceLength),
		"--provider-key", pv.keyPath(), "--broker", pv.url, "--tracker", pv.url+"/announce",
		"--class", "gold:0:"+strconv.Itoa(pricePerMiB), "-o", torrent, content)
	if !strings.Contains(out, "paid:       broker "+pv.url) {
		t.Fatalf("create did not report paid terms:\n%s", out)
	}
	mi, err := metainfo.Load(filepath.Join(pv.dir, torrent))
	if err != nil {
		t.Fatal(err)
	}
	return mi
}

var (
	seedingRE = regexp.MustCompile(`(?m)^seeding .* on (\S+)$`)
	earningRE = regexp.MustCompile(`earning as account ([0-9a-f]+) via `)
	earnedRE  = regexp.MustCompile(`earned (\d+) units \(redeemed\)`)
	priceRE   = regexp.MustCompile(`price (\d+) units for .*; your balance (\d+) units`)
	paidRE    = regexp.MustCompile(`(?m)^paid (\d+) units to uploaders`)
)

// seeder starts `floodgate seed` on a free port and waits until it is
// listed by the tracker.
func (pv *provider) seed(t *testing.T, mi *metainfo.MetaInfo, keyPath, torrent, content string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"seed", "--key", keyPath, "--state-dir", filepath.Join(pv.dir, "state", "seeder"),
		"--listen", "127.0.0.1:0"}, extra...)
	s := start(t, pv.dir, "seed", append(args, torrent, content)...)
	s.waitPrinted(t, seedingRE, 20*time.Second)
	pv.waitSeeders(t, mi.InfoHash, 1)
	return s
}

// persistedEarned reads what a peer redeemed as an uploader from the
// payment state it persists under its --state-dir: `get` prints only what
// it spent, so this is where a downloader's earnings from the others show.
func persistedEarned(t *testing.T, stateDir string) int64 {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(stateDir, "*.json"))
	if err != nil || len(files) != 1 {
		t.Fatalf("want one payment state file in %s, found %v (%v)", stateDir, files, err)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Earned *int64 `json:"earned"`
	}
	if err := json.Unmarshal(b, &st); err != nil || st.Earned == nil {
		t.Fatalf("payment state %s has no earned figure (%v):\n%s", files[0], err, b)
	}
	return *st.Earned
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPaidSwarmFromCLI is issue 4's "done when": a provider, a seeder and
// three paying downloaders, each a separate process, complete a download in
// which the verified bytes are paid for, the seeder redeems its earnings on
// exit and the ledger balances.
//
// What each downloader pays: it owes each uploader u floor(B_u × price /
// 2^20) units for the B_u verified bytes u sent it (DESIGN §4), and every
// byte comes from a paid uploader (the seeder or another downloader; there
// is no free source), so ΣB_u is the file size S. With P = floor(S ×
// price / 2^20), the price `get` quotes, and k ≤ 3 uploaders contributing,
// the sum of floors lies in [P − (k−1), P]: each uploader's fraction of a
// unit is lost to rounding. Which uploader sent which block is up to the
// swarm, so that bound is what can be checked per downloader.
//
// One thing blurs it: `get` exits the moment its own download is verified,
// and a downloader that also uploads leaves with the last payments for
// what it served still on their way (sent after it stopped reading, so
// never redeemed and refunded to the payer when it closes the channel), or
// not yet due (blocks of pieces the payer had not verified yet, which it
// can then no longer pay). Both are bounded by about a piece's value per
// downloader that left first: lostPerLeaver below. The seeder stays until
// every get has exited, so nothing owed to it is lost.
//
// The money is then checked exactly through the balances: what the
// ledger took from each downloader (minted − balance + what it earned
// from the others, read from its persisted payment state) is at most what
// `get` says it paid and at most lostPerLeaver per leaver less; the
// seeder's balance is what it printed it redeemed; nothing stays locked
// (the peers' balances sum to what was minted, the fee being 0); and the
// broker's audit balances.
func TestPaidSwarmFromCLI(t *testing.T) {
	dir := t.TempDir()
	pv := startProvider(t, dir)
	// Not a whole number of MiB or pieces, so the price is a floor.
	const size = 6<<20 + 12345
	data := writeContent(t, dir, "content.bin", size)
	mi := pv.createPaid(t, "content.bin", "paid.torrent")
	price, err := terms.PriceFor(size, pricePerMiB)
	if err != nil {
		t.Fatal(err)
	}

	seedKey, seedAccount := pv.newAccount(t, "seeder")
	names := []string{"alice", "bob", "carol"}
	keys := map[string]string{}
	for _, name := range names {
		k, account := pv.newAccount(t, name)
		keys[name] = k
		pv.mint(t, account, funds)
	}

	// The seeder's upload is capped well below loopback speed so that the
	// downloaders fetch much of the file from each other, and pay each
	// other for it.
	seeder := pv.seed(t, mi, seedKey, "paid.torrent", "content.bin", "--upload-limit", "1MiB/s")
	if m := earningRE.FindStringSubmatch(seeder.stdout()); m == nil || m[1] != seedAccount {
		t.Fatalf("seed does not say it earns as account %s:\n%s", seedAccount, seeder.stdout())
	}

	gets := map[string]*proc{}
	for _, name := range names {
		gets[name] = start(t, dir, "get-"+name, "get", "--key", keys[name],
			"--state-dir", filepath.Join(dir, "state", name), "--listen", "127.0.0.1:0",
			"--out", filepath.Join(dir, "out", name), "--timeout", "40s", "paid.torrent")
	}
	spent := map[string]int64{}
	var totalSpent int64
	for _, name := range names {
		g := gets[name]
		if err := g.wait(t, 45*time.Second); err != nil {
			t.Fatalf("get %s: %v\nstdout:\n%s\nstderr:\n%s", name, err, g.stdout(), tail(g.stderr(), 30))
		}
		got, err := os.ReadFile(filepath.Join(dir, "out", name, "content.bin"))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s downloaded different bytes (%d of %d, %v)", name, len(got), len(data), err)
		}
		q := priceRE.FindStringSubmatch(g.stderr())
		if q == nil || atoi(t, q[1]) != price || atoi(t, q[2]) != funds {
			t.Fatalf("%s: get quoted %q, want price %d and balance %d", name, q, price, funds)
		}
		m := paidRE.FindStringSubmatch(g.stdout())
		if m == nil {
			t.Fatalf("%s: get does not say what it paid:\n%s", name, g.stdout())
		}
		spent[name] = atoi(t, m[1])
		totalSpent += spent[name]
		// Rounding costs at most a unit per uploader after the first; the
		// other two downloaders may each have left with a piece unpaid.
		leavers := int64(len(names) - 1)
		if lo := price - leavers - leavers*lostPerLeaver; spent[name] < lo || spent[name] > price {
			t.Errorf("%s paid %d units, want within [%d, %d] (price %d, less rounding and what was owed to downloaders that left first)",
				name, spent[name], lo, price, price)
		}
	}

	// Ctrl-C: the seeder redeems the last payments and closes the
	// channels paid to it, which returns the unspent rest to the payers.
	if err := seeder.interrupt(t, 30*time.Second); err != nil {
		t.Fatalf("seed exited with %v", err)
	}
	m := earnedRE.FindStringSubmatch(seeder.stdout())
	if m == nil {
		t.Fatalf("seed does not report what it redeemed:\n%s", seeder.stdout())
	}
	seederEarned := atoi(t, m[1])
	if b := pv.balance(t, seedKey); b != seederEarned {
		t.Errorf("seeder balance %d, but it reported redeeming %d", b, seederEarned)
	}

	sum := pv.balance(t, seedKey)
	totalEarned := seederEarned
	var peersEarned, totalCharged int64
	for _, name := range names {
		earned := persistedEarned(t, filepath.Join(dir, "state", name))
		peersEarned += earned
		totalEarned += earned
		b := pv.balance(t, keys[name])
		sum += b
		// What the ledger moved out of this downloader's channels, now
		// that every channel paid to is closed and its rest refunded.
		charged := funds - b + earned
		totalCharged += charged
		if lost := spent[name] - charged; lost < 0 || lost > int64(len(names)-1)*lostPerLeaver {
			t.Errorf("%s: the ledger charged %d (minted %d - balance %d + earned %d), but get says it paid %d: want at most that and at most %d less",
				name, charged, funds, b, earned, spent[name], int64(len(names)-1)*lostPerLeaver)
		}
		t.Logf("%s: price %d, paid %d, charged %d, earned %d", name, price, spent[name], charged, earned)
	}
	t.Logf("seeder earned %d; downloaders earned %d from each other; all paid %d, were charged %d", seederEarned, peersEarned, totalSpent, totalCharged)
	if totalEarned != totalCharged {
		t.Errorf("uploaders redeemed %d in all, downloaders were charged %d (provider fee is 0)", totalEarned, totalCharged)
	}
	if peersEarned == 0 {
		t.Errorf("the downloaders earned nothing from each other: the seeder's upload cap should have made them trade")
	}
	if seederEarned == 0 {
		t.Errorf("the seeder earned nothing")
	}
	if want := int64(len(names)) * funds; sum != want {
		t.Errorf("the peers' balances sum to %d, want the %d minted: money is still locked in channels", sum, want)
	}
	a := pv.audit(t)
	if !a.Conserved || a.Minted != int64(len(names))*funds || a.SumOfBalances != a.Minted {
		t.Errorf("audit: %+v, want %d minted and conserved", a, int64(len(names))*funds)
	}
}

// TestMaxSpendBelowPriceRefusesToStart: a buyer whose --max-spend is below
// the quoted price is refused before anything is locked or downloaded.
func TestMaxSpendBelowPriceRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	pv := startProvider(t, dir)
	const size = 3<<20 + 999
	writeContent(t, dir, "content.bin", size)
	mi := pv.createPaid(t, "content.bin", "paid.torrent")
	price, err := terms.PriceFor(size, pricePerMiB)
	if err != nil {
		t.Fatal(err)
	}
	seedKey, _ := pv.newAccount(t, "seeder")
	buyerKey, buyer := pv.newAccount(t, "buyer")
	pv.mint(t, buyer, funds)
	pv.seed(t, mi, seedKey, "paid.torrent", "content.bin")

	out, errOut, err := fg(dir, "get", "--key", buyerKey, "--state-dir", filepath.Join(dir, "state", "buyer"),
		"--listen", "127.0.0.1:0", "--out", "out", "--timeout", "20s",
		"--max-spend", strconv.FormatInt(price-1, 10), "paid.torrent")
	if code := exitCode(err); code != 1 {
		t.Fatalf("get --max-spend %d exited %d (%v), want 1\nstdout:\n%s\nstderr:\n%s", price-1, code, err, out, errOut)
	}
	want := "the price " + strconv.FormatInt(price, 10) + " exceeds --max-spend " + strconv.FormatInt(price-1, 10)
	if !strings.Contains(errOut, want) {
		t.Errorf("stderr does not say %q:\n%s", want, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "out", "content.bin")); err == nil {
		t.Errorf("a refused download left %s behind", filepath.Join("out", "content.bin"))
	}
	if b := pv.balance(t, buyerKey); b != funds {
		t.Errorf("buyer balance %d after a refused download, want %d", b, funds)
	}
	if a := pv.audit(t); !a.Conserved || a.Minted != funds {
		t.Errorf("audit: %+v", a)
	}
}

// TestPlainTorrentDownloadsForFree: a torrent without Floodgate terms,
// tracked by the provider, is served and downloaded by Floodgate peers
// with identities without any money moving.
func TestPlainTorrentDownloadsForFree(t *testing.T) {
	dir := t.TempDir()
	pv := startProvider(t, dir)
	data := writeContent(t, dir, "plain.bin", 2<<20+4321)
	mustFG(t, dir, "create", "--piece-length", "64KiB", "--tracker", pv.url+"/announce", "-o", "plain.torrent", "plain.bin")
	mi, err := metainfo.Load(filepath.Join(dir, "plain.torrent"))
	if err != nil {
		t.Fatal(err)
	}
	if len(mi.Floodgate) != 0 {
		t.Fatal("a torrent made without --provider-key carries Floodgate terms")
	}
	seedKey, _ := pv.newAccount(t, "seeder")
	buyerKey, buyer := pv.newAccount(t, "buyer")
	pv.mint(t, buyer, funds)
	seeder := pv.seed(t, mi, seedKey, "plain.torrent", "plain.bin")
	if strings.Contains(seeder.stdout(), "paid torrent") {
		t.Errorf("seed of a plain torrent talks about payment:\n%s", seeder.stdout())
	}

	out, errOut, err := fg(dir, "get", "--key", buyerKey, "--state-dir", filepath.Join(dir, "state", "buyer"),
		"--listen", "127.0.0.1:0", "--out", "out", "--timeout", "20s", "plain.torrent")
	if err != nil {
		t.Fatalf("get of a plain torrent: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	got, err := os.ReadFile(filepath.Join(dir, "out", "plain.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("downloaded different bytes (%d of %d, %v)", len(got), len(data), err)
	}
	if strings.Contains(out+errOut, "paid") {
		t.Errorf("get of a plain torrent talks about payment:\nstdout:\n%s\nstderr:\n%s", out, errOut)
	}
	if err := seeder.interrupt(t, 20*time.Second); err != nil {
		t.Fatalf("seed exited with %v", err)
	}
	if b := pv.balance(t, buyerKey); b != funds {
		t.Errorf("buyer balance %d after a free download, want %d", b, funds)
	}
	if b := pv.balance(t, seedKey); b != 0 {
		t.Errorf("seeder balance %d after serving a plain torrent, want 0", b)
	}
	if a := pv.audit(t); !a.Conserved || a.Minted != funds {
		t.Errorf("audit: %+v", a)
	}
}
