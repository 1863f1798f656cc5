package main

import (
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/floodgate-p2p/floodgate/internal/broker"
	"github.com/floodgate-p2p/floodgate/internal/identity"
	"github.com/floodgate-p2p/floodgate/internal/provider"
)

// newMintCmd is `floodgate mint`: the provider credits a customer after a
// real-world payment.
func newMintCmd() *cobra.Command {
	var keyPath, brokerURL, idemKey string
	cmd := &cobra.Command{
		Use:   "mint --provider-key FILE --broker URL ACCOUNT AMOUNT",
		Short: "Credit AMOUNT units to ACCOUNT (provider only)",
		Long: `Credit AMOUNT units (a positive integer) to ACCOUNT, signed with the
provider's key. Give the real-world payment's reference as
--idempotency-key: running the command again with the same key never
mints twice. Without one, a random key is used and printed, so a mint
whose outcome is unknown (a network error) can be retried safely with it.`,
		Args: exactArgs(2, "ACCOUNT and AMOUNT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			account := args[0]
			amount, err := strconv.ParseInt(args[1], 10, 64)
			if err != nil || amount <= 0 {
				return usagef("AMOUNT must be a positive integer number of units, got %q", args[1])
			}
			k, err := identity.ReadKeyFile(keyPath)
			if err != nil {
				return err
			}
			c, err := newBrokerClient(brokerURL, k)
			if err != nil {
				return err
			}
			if idemKey == "" {
				idemKey = broker.NewIdempotencyKey()
			}
			if err := c.Mint(cmd.Context(), idemKey, account, amount); err != nil {
				return fmt.Errorf("%w (idempotency key %s: retry with --idempotency-key %s)", err, idemKey, idemKey)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "minted %d to %s (idempotency key %s)\n", amount, account, idemKey)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "provider-key", filepath.Join(defaultProviderDataDir(), provider.KeyFile), "the provider's key file")
	cmd.Flags().StringVar(&brokerURL, "broker", brokerURLDefault(), "the provider's broker URL")
	cmd.Flags().StringVar(&idemKey, "idempotency-key", "", "key that makes retries safe (default: random, printed)")
	return cmd
}
