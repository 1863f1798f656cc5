package main

import "github.com/spf13/cobra"

// addMoneyCommands adds the broker-side commands (accounts, minting, the
// provider) once they exist.
func addMoneyCommands(root *cobra.Command) {}
