//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal and returns its controller and terminal ends.
func openPTY(t *testing.T) (ctl, term *os.File) {
	t.Helper()
	ctl, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	fd := int(ctl.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		ctl.Close()
		t.Skipf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		ctl.Close()
		t.Skipf("pty number: %v", err)
	}
	term, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		ctl.Close()
		t.Skipf("open pty: %v", err)
	}
	return ctl, term
}

// runTTY runs simdr with the streams named in which ("stdin", "stdout",
// "stderr") on a terminal, the others as given (stdin: /dev/null, the outputs
// captured). It returns the exit code, what reached the terminal, stdout and
// stderr.
func runTTY(t *testing.T, which string, args ...string) (code int, tty, stdout, stderr string) {
	t.Helper()
	ctl, term := openPTY(t)
	defer ctl.Close()
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if strings.Contains(which, "stdin") {
		cmd.Stdin = term
	}
	if strings.Contains(which, "stdout") {
		cmd.Stdout = term
	}
	if strings.Contains(which, "stderr") {
		cmd.Stderr = term
	}
	if err := cmd.Start(); err != nil {
		term.Close()
		t.Fatal(err)
	}
	term.Close() // the child holds it; reading ctl ends (EIO) when the child exits
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(ctl)
		got <- b
	}()
	err := cmd.Wait()
	b := <-got
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, string(b), out.String(), errb.String()
}

func TestTerminal(t *testing.T) {
	f := storePath(t)
	ok(t, f, "write", "hello", "world")

	// read to a terminal: a newline follows the value (a pipe gets none).
	code, tty, _, _ := runTTY(t, "stdout", f, "read", "hello")
	if code != 0 || tty != "world\r\n" {
		t.Errorf("read to a terminal: exit %d, %q", code, tty)
	}

	// write without VALUE, stdin a terminal: an error, no waiting.
	code, _, _, stderr := runTTY(t, "stdin", f, "write", "k")
	if code != 1 || !strings.Contains(stderr, "No value provided") {
		t.Errorf("write from a terminal: exit %d, stderr %q", code, stderr)
	}

	// batch with a terminal on stdin: an error, no waiting.
	code, _, _, stderr = runTTY(t, "stdin", f, "batch")
	if code != 1 || !strings.Contains(stderr, "pipe them in") {
		t.Errorf("batch from a terminal: exit %d, stderr %q", code, stderr)
	}

	// Progress bars on a terminal stderr; none with --quiet.
	dir := t.TempDir()
	writeTree(t, filepath.Join(dir, "in"), map[string]string{"a": "aaa", "b/c": "ccc"})
	for _, c := range []struct {
		args  []string
		label string
	}{
		{[]string{f, "import", filepath.Join(dir, "in")}, "importing"},
		{[]string{f, "verify"}, "verifying"},
		{[]string{f, "compact"}, "compacting"},
		{[]string{f, "export", filepath.Join(dir, "out")}, "exporting"},
	} {
		code, tty, _, _ := runTTY(t, "stderr", c.args...)
		if code != 0 || !strings.Contains(tty, c.label) || !strings.Contains(tty, "\r") {
			t.Errorf("%s on a terminal: exit %d, %q", c.args[1], code, tty)
		}
		// The bar is cleared: the confirmation starts a clean line.
		if c.label == "importing" && !strings.Contains(tty, "\x1b[2K\rImported 2 files") {
			t.Errorf("import on a terminal: %q", tty)
		}
		quiet := append(slices.Clone(c.args), "--quiet")
		if c.label == "exporting" {
			quiet = append(quiet, "--force") // the files are there now
		}
		code, tty, _, _ = runTTY(t, "stderr", quiet...)
		if code != 0 || tty != "" {
			t.Errorf("%s --quiet on a terminal: exit %d, %q", c.args[1], code, tty)
		}
	}
	// Without a terminal, no bar: only the confirmation.
	r := ok(t, f, "compact")
	if strings.Contains(string(r.stderr), "compacting") || strings.Contains(string(r.stderr), "\r") {
		t.Errorf("compact to a pipe: %q", r.stderr)
	}
}
