package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/floodgate-p2p/floodgate/internal/emulator"
)

func newEmulateCmd() *cobra.Command {
	var jsonPath, logPath string
	cmd := &cobra.Command{
		Use:   "emulate SCENARIO.toml [--json REPORT.json]",
		Short: "Run a scenario: a whole swarm in one process over loopback",
		Long: `Run the swarm a scenario file describes — the provider (tracker, broker,
origin with its upload capacity) and groups of peers with shaped upload and
download rates, arrivals and departures — in this process over real
loopback connections, each peer on its own 127.0.x.y address, and write
the JSON report (DESIGN §6). The run ends when no peer is still
downloading (each completed, left or stalled for stall_timeout) or at
max_duration. Exit status 0 whenever a report was written.`,
		Args: exactArgs(1, "exactly one SCENARIO.toml"),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return usagef("%v", err)
			}
			sc, notes, err := emulator.ParseScenario(data)
			if err != nil {
				return usageError{err}
			}
			for _, n := range notes {
				fmt.Fprintln(cmd.ErrOrStderr(), "note:", n)
			}
			return runScenario(cmd, sc, jsonPath, logPath)
		},
	}
	cmd.Flags().StringVar(&jsonPath, "json", "", "write the JSON report here")
	cmd.Flags().StringVar(&logPath, "log", "", "write every peer's debug log (connections, holds, channel opens and closes) to this file")
	return cmd
}
