// Package interop holds the interoperability tests of Floodgate against
// independent BitTorrent implementations from Debian's packages: aria2c as
// seeder and leecher, opentracker as tracker, mktorrent and
// transmission-show for metainfo files.
//
// The tests drive the real floodgate binary (built once per run) and the
// real external programs as separate processes on 127.0.0.1 and free
// ports, so they exercise exactly what a user runs. A test whose external
// program is missing skips with a message naming the Debian package, except
// when the environment variable CI is "true", where the missing program is
// a failure; `bash scripts/test.sh` installs them all.
//
// The package has no non-test code beyond this comment.
package interop
