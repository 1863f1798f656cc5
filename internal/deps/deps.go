// Package deps pins the modules the project is about to use, so that parallel work on
// several packages shares one go.mod. Remove an import once real code uses it.
package deps

import (
	_ "github.com/BurntSushi/toml"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "go.uber.org/goleak"
	_ "golang.org/x/sync/errgroup"
	_ "golang.org/x/term"
	_ "golang.org/x/time/rate"
	_ "modernc.org/sqlite"
)
