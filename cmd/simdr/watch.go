package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/simdr-go/simdr"
)

var cmdWatch = &command{
	name: "watch", args: "",
	summary: "print each new entry as the writer commits it, like tail -f",
	help: `
Follows the store read-only and prints one line for each entry the writer
commits from now on, oldest first, as it is committed: its key hash (16 hex
digits, as list prints), "put" and the value's size, or "delete"; then the
key, quoted, where the import manifest names it (with --namespace, that
namespace's manifest). A compaction prints "# compacted". On stderr it
says where it starts, unless --quiet. It sleeps on the
writer's commit counter (no polling, next to no CPU while idle) and runs
until interrupted (Ctrl-C, SIGTERM: exit 0).`,
	examples: []string{
		`simdr data.simdr watch`,
		`simdr site.simdr watch --namespace assets`,
	},
	minArgs: 0, maxArgs: 0,
	flags: func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.namespace, "namespace", o.namespace, "name keys from the import manifest of namespace `NS`")
		fs.StringVar(&o.namespace, "n", o.namespace, "")
	},
	run: runWatch,
}

func runWatch(a *app, file string, _ []string) (err error) {
	s, err := a.openRead(file)
	if err != nil {
		return err
	}
	defer closeStore(s, &err)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return watch(ctx, a, s)
}

// watch prints the changes of s until ctx is done.
func watch(ctx context.Context, a *app, s *simdr.Store) error {
	mhash := simdr.Hash(manifestKey(a.o.namespace))
	names := map[uint64]string{}
	load := func() {
		clear(names)
		if keys, err := readManifest(s, a.o.namespace); err == nil {
			for _, k := range keys {
				names[simdr.Hash(storeKey(a.o.namespace, k))] = k
			}
		}
	}
	load()
	cur := s.Cursor()
	a.info("watching %s from byte %d (Ctrl-C stops)", s.Path(), cur.Tail())
	for {
		if err := s.Wait(ctx); err != nil { // a follower's Wait sees what it has not refreshed yet
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := s.Refresh(); err != nil {
			return err
		}
		changes, to, err := s.Changes(cur)
		if errors.Is(err, simdr.ErrNotFound) { // compacted: another file
			fmt.Fprintln(a.stdout, "# compacted")
			cur = to
			continue
		}
		if err != nil {
			return err
		}
		for _, c := range changes {
			if c.KeyHash == mhash {
				load()
			}
		}
		for _, c := range changes {
			line := fmt.Sprintf("%016x  put %d", c.KeyHash, c.Len)
			if c.Deleted {
				line = fmt.Sprintf("%016x  delete", c.KeyHash)
			}
			if c.KeyHash == mhash {
				line += "  " + manifestLabel
			} else if k, ok := names[c.KeyHash]; ok {
				line += fmt.Sprintf("  %q", k)
			}
			if _, err := fmt.Fprintln(a.stdout, line); err != nil {
				return err
			}
		}
		cur = to
	}
}
