// Package paidcli is the end-to-end test of a paid Floodgate swarm driven
// entirely from the command line: a `floodgate provider`, a `floodgate
// seed` and several `floodgate get` run as separate processes on
// 127.0.0.1, and the money they move is checked through `floodgate account
// balance`, the payment state the peers persist, and the broker's audit.
//
// It is the executable form of docs/walkthrough.md. The binary is built
// once per run from this checkout (or taken from FLOODGATE_PAIDCLI_BIN);
// every process a test starts is killed by the test's cleanup.
//
// The package has no non-test code beyond this comment.
package paidcli
