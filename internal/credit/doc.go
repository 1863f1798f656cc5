// Package credit is the money arithmetic of the paid swarm (DESIGN §4):
// what a downloader owes each uploader, and how much unpaid service an
// uploader risks on each account.
//
// Owed is exact. Bytes at a price of p units per MiB are worth
// bytes × p / 2^20 units; both sides accumulate that value exactly (whole
// units plus the fraction in 2^-20 units, products in 128 bits) and the
// amount owed is its floor. Many small blocks are therefore worth exactly
// what one large block is, and with one price the amount owed is
// floor(total bytes × p / 2^20). A class change mid-transfer adds value at
// the new price to the same total, so owed = floor(Σ bytes_p × p / 2^20):
// the floor of the exact value, whatever the split.
//
// The downloader's side is a Tab: Received after each verified piece, one
// call per contributor; Due is what to pay now; Paid records it.
//
// The uploader's side is a Book, keyed by account (never by connection),
// persisted with Snapshot/Restore. MayServe answers Serve, Wait (ask for
// payment) or Refuse. It bounds the value at risk (served, not yet paid,
// rounded up to a unit) per account by a window that starts small and
// doubles with payments, across all accounts by MaxExposure, and across
// accounts that never paid by MaxFreshExposure, so neither reconnecting,
// restarting nor churning identities yields free data beyond those caps.
// Overdue lists accounts whose debt stopped shrinking, for the engine to
// report and Block.
//
// Everything here is pure: state and the current time in, decisions out;
// no clock, goroutines or I/O. Neither type is safe for concurrent use.
package credit
