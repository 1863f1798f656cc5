package main

import "github.com/spf13/cobra"

// addMoneyCommands adds the broker-side commands: accounts, minting and the
// provider (tracker + broker + metrics).
func addMoneyCommands(root *cobra.Command) {
	root.AddCommand(newAccountCmd(), newMintCmd(), newProviderCmd())
}
