package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/floodgate-p2p/floodgate/internal/broker"
	"github.com/floodgate-p2p/floodgate/internal/identity"
)

// defaultBrokerURL is where `floodgate provider` listens by default; the
// FLOODGATE_BROKER environment variable overrides it.
const defaultBrokerURL = "http://127.0.0.1:7070"

func brokerURLDefault() string {
	if u := os.Getenv("FLOODGATE_BROKER"); u != "" {
		return u
	}
	return defaultBrokerURL
}

// defaultKeyPath is the customer's identity key: $XDG_CONFIG_HOME/floodgate/
// identity.key (os.UserConfigDir), or ./floodgate-identity.key when the
// system has no config directory.
func defaultKeyPath() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "floodgate-identity.key"
	}
	return filepath.Join(dir, "floodgate", "identity.key")
}

// certPath is where `account register` stores the certificate of the key
// at keyPath.
func certPath(keyPath string) string { return keyPath + ".cert" }

func newBrokerClient(brokerURL string, key *identity.PrivateKey) (*broker.Client, error) {
	c, err := broker.NewClient(broker.ClientConfig{BaseURL: brokerURL, Key: key})
	if err != nil {
		return nil, usagef("--broker: %v", err)
	}
	return c, nil
}

// newAccountCmd is `floodgate account new|register|balance`.
func newAccountCmd() *cobra.Command {
	var keyPath, brokerURL string
	cmd := &cobra.Command{
		Use:   "account",
		Short: "Manage this customer's identity and broker account",
		Long: `Manage the Ed25519 identity key that names this customer's account at the
provider's broker. The key file is created with mode 0600 and refused if
group or others can read it.`,
		Args: exactArgs(0, "a subcommand (new, register, balance)"),
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.PersistentFlags().StringVar(&keyPath, "key", defaultKeyPath(), "identity key file")

	newCmd := &cobra.Command{
		Use:   "new [--key FILE]",
		Short: "Create a new identity key (never overwrites one)",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := identity.GenerateKey(nil)
			if err != nil {
				return err
			}
			if err := identity.WriteKeyFile(keyPath, k); err != nil {
				if errors.Is(err, fs.ErrExist) {
					return fmt.Errorf("%s already exists; refusing to overwrite an identity (use --key for another file)", keyPath)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key:        %s\npublic key: %s\naccount:    %s\n", keyPath, k.Public(), k.AccountID())
			return nil
		},
	}

	registerCmd := &cobra.Command{
		Use:   "register [--key FILE] [--broker URL]",
		Short: "Register the key with the broker and save its certificate",
		Long: `Register the key with the provider's broker, which creates the account (if
new) and returns a certificate binding the key to it. The certificate is
saved next to the key as FILE.cert. Registering again renews it.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := identity.ReadKeyFile(keyPath)
			if err != nil {
				return err
			}
			c, err := newBrokerClient(brokerURL, k)
			if err != nil {
				return err
			}
			resp, err := c.Register(cmd.Context())
			if err != nil {
				return err
			}
			if err := identity.WriteCertificateFile(certPath(keyPath), resp.Certificate); err != nil {
				return fmt.Errorf("saving certificate: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "account:     %s\ncertificate: %s (expires %s)\n", resp.Account, certPath(keyPath), resp.Certificate.Expiry.Format("2006-01-02 15:04:05Z07:00"))
			return nil
		},
	}
	registerCmd.Flags().StringVar(&brokerURL, "broker", brokerURLDefault(), "the provider's broker URL")

	balanceCmd := &cobra.Command{
		Use:   "balance [--key FILE] [--broker URL]",
		Short: "Print the account's balance in units",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := identity.ReadKeyFile(keyPath)
			if err != nil {
				return err
			}
			c, err := newBrokerClient(brokerURL, k)
			if err != nil {
				return err
			}
			bal, err := c.Balance(cmd.Context(), k.AccountID())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d\n", bal)
			return nil
		},
	}
	balanceCmd.Flags().StringVar(&brokerURL, "broker", brokerURLDefault(), "the provider's broker URL")

	cmd.AddCommand(newCmd, registerCmd, balanceCmd)
	return cmd
}
