package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/simdr-go/simdr/server"
)

var cmdServe = &command{
	name: "serve", args: "",
	summary: "serve the store over HTTP",
	help: `
Opens FILE for writing (created if missing) and serves it over HTTP until
interrupted (SIGINT or SIGTERM): then it stops accepting, finishes the requests
in flight, syncs and closes the store. While it runs, other simdr commands can
still read FILE (read, info, list, verify, export); commands that write wait
for it (--lock-timeout) or fail.

Listening on an address other than loopback needs a token (--token-file) or
--insecure. The token is read from a file, never from the command line, where
other users could see it in the process list.`,
	examples: []string{
		`simdr data.simdr serve`,
		`simdr data.simdr serve --addr 0.0.0.0:7070 --token-file /run/secrets/simdr-token`,
		`simdr data.simdr serve --max-value-bytes 64M`,
	},
	minArgs: 0, maxArgs: 0,
	flags: func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.addr, "addr", server.DefaultAddr, "listen on `HOST:PORT` (default "+server.DefaultAddr+")")
		fs.StringVar(&o.tokenFile, "token-file", o.tokenFile, "require the bearer token held in `FILE`")
		fs.BoolVar(&o.insecure, "insecure", o.insecure, "allow a non-loopback address without a token")
		fs.StringVar(&o.maxValue, "max-value-bytes", o.maxValue, "refuse values larger than `SIZE` (64M, 1G, ...; default: no limit)")
	},
	run: runServe,
}

func runServe(a *app, file string, _ []string) (err error) {
	// Catch the signals first: from here on, SIGINT and SIGTERM stop the
	// server gracefully instead of killing the process.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg := server.Config{Addr: a.o.addr, Insecure: a.o.insecure}
	if a.o.maxValue != "" {
		n, err := parseSize(a.o.maxValue)
		if err != nil {
			return usagef("serve: --max-value-bytes: %v", err)
		}
		cfg.MaxValueBytes = n
	}
	if a.o.tokenFile != "" {
		b, err := os.ReadFile(a.o.tokenFile)
		if err != nil {
			return fmt.Errorf("serve: token file: %w", err)
		}
		cfg.Token = strings.TrimSpace(string(b))
		if cfg.Token == "" {
			return fmt.Errorf("serve: token file %s is empty", a.o.tokenFile)
		}
	}
	if err := server.CheckAddr(cfg.Addr, cfg); err != nil {
		return fmt.Errorf("serve: %w (see --token-file and --insecure)", err)
	}
	s, err := a.openWrite(file, false)
	if err != nil {
		return err
	}
	defer closeStore(s, &err)
	// Listen before printing the address, so that the line names the port
	// actually bound (--addr 127.0.0.1:0 picks a free one) and a client that
	// reads it can connect at once.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	a.info("simdr: serving %s on http://%s (Ctrl-C to stop)", file, ln.Addr())
	err = server.Serve(ctx, ln, s, cfg)
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("serve: %w", err)
	}
	a.info("simdr: stopped")
	return nil
}
