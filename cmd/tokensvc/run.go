package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/tokensvc/tokensvc/migrations"
	"github.com/tokensvc/tokensvc/server/keys"
)

const usage = `Usage: tokensvc [-config FILE] [COMMAND]

Commands:
  serve        serve the API (the default)
  migrate      bring Redis to the key layout this binary needs (run once per deployment)
  healthcheck  exit 0 when the local server's /readyz answers 200 (for container health checks)
  hash-key     print the sha256: form of a secret read from standard input, for key sources
  audit        print the audit trail kept in Redis (TOKENSVC_AUDIT=redis); audit -h for its flags
  version      print the version

Flags:
`

// run is the whole program; main only adds the process around it. ready,
// if not nil, is told the listening address once the server accepts.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer, ready func(addr string)) error {
	fs := flag.NewFlagSet("tokensvc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", getenv("TOKENSVC_CONFIG"), "YAML configuration file (or TOKENSVC_CONFIG); the environment overrides it")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), "\nSettings (environment variable, key in the YAML file, default):\n")
		printSettings(fs.Output())
	}
	parse := func(args []string) (help bool, err error) {
		err = fs.Parse(args)
		return errors.Is(err, flag.ErrHelp), err
	}
	// Flags may come before the command and after it.
	if help, err := parse(args); help {
		return nil
	} else if err != nil {
		return err
	}
	cmd := "serve"
	if fs.NArg() > 0 {
		cmd = fs.Arg(0)
		if cmd == "audit" { // flags of its own
			return auditCommand(ctx, fs.Args()[1:], getenv, *configFile, stdout, stderr)
		}
		if help, err := parse(fs.Args()[1:]); help {
			return nil
		} else if err != nil {
			return err
		}
	}
	rest := fs.Args()

	switch cmd {
	case "version":
		fmt.Fprintln(stdout, "tokensvc", version())
		return nil
	case "hash-key":
		return hashKey(stdin, stdout, rest)
	}
	if len(rest) > 0 {
		return fmt.Errorf("%s takes no arguments, got %q", cmd, rest)
	}
	cfg, err := loadConfig(getenv, *configFile)
	if err != nil {
		return err
	}
	switch cmd {
	case "serve":
		return serve(ctx, cfg, stdout, stderr, ready)
	case "migrate":
		return migrate(ctx, cfg, stdout, stderr)
	case "healthcheck":
		return healthcheck(ctx, cfg)
	}
	return fmt.Errorf("unknown command %q (run tokensvc -h)", cmd)
}

// version is the module version, or the VCS revision of a source build.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && (v == "" || v == "(devel)") {
			v = "devel-" + s.Value[:min(12, len(s.Value))]
		}
	}
	if v == "" {
		v = "(devel)"
	}
	return v
}

func migrate(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	if cfg.RedisURL == "" {
		return errors.New("migrate needs TOKENSVC_REDIS_URL: the embedded store has nothing to migrate")
	}
	c, deps, err := newRedisClient(cfg.RedisURL, cfg.StoreTimeout, cfg.RedisCA)
	if err != nil {
		return fmt.Errorf("configuration TOKENSVC_REDIS_URL: %w", err)
	}
	for _, d := range deps {
		fmt.Fprintf(stderr, "tokensvc: warning: %s: %s; use %s\n", d.message(), d.old, d.use)
	}
	defer c.Close()
	res, err := migrations.Apply(ctx, c, cfg.RedisPrefix)
	for _, step := range res.Applied {
		fmt.Fprintln(stdout, "applied", step)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Redis layout is %d (was %d) under prefix %q\n", res.To, res.From, cfg.RedisPrefix)
	return nil
}

func healthcheck(ctx context.Context, cfg config) error {
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return fmt.Errorf("configuration TOKENSVC_ADDR: %w", err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	scheme, client := "http", http.DefaultClient
	if cfg.TLSCert != "" {
		// The local listener's certificate names the public host, not the
		// loopback address: this probe only asks whether it answers.
		scheme = "https"
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // loopback health probe
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+net.JoinHostPort(host, port)+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /readyz answered %d", resp.StatusCode)
	}
	return nil
}

// hashKey prints the sha256: form of a secret. The secret is read from
// standard input, so it stays out of the shell history and process list.
func hashKey(stdin io.Reader, stdout io.Writer, args []string) error {
	if len(args) > 0 {
		return errors.New("hash-key reads the secret from standard input, not from arguments")
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	secret := strings.TrimRight(line, "\r\n")
	if secret == "" {
		return errors.New("hash-key: no secret on standard input")
	}
	fmt.Fprintln(stdout, keys.HashSecret(secret))
	return nil
}
