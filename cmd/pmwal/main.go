// Command pmwal is the operator's tool for pmwal logs.
//
// Usage:
//
//	pmwal info DIR                      how the log is made durable here, and what it holds
//	pmwal verify DIR                    check every record, read-only
//	pmwal dump DIR [--from N] [--to M] [--format text|json|raw]
//	pmwal repair DIR [--yes]            cut the log at the first corruption, saving what is cut
//	pmwal bench [--dir D] [--size N] [--writers K] [--batch B] [--persist MODE] [--duration T] [--json]
//	pmwal torture DIR [--kills N] [--persist MODE]
//	pmwal demo [--dir DIR] [--persist MODE] [--records N] [--keep]
//
// Flags may come before or after DIR. Every command takes --help.
//
// Exit codes: 0 fine, 1 a problem was found (corruption, a failed check),
// 2 usage error or cannot run (no such log, the log is in use, ...).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/pmwal/wal"
	"golang.org/x/sys/unix"
)

// errProblem marks a failure that is a finding (exit 1), not a usage error.
var errProblem = errors.New("problem found")

// errUsage marks bad arguments (exit 2, after the command's usage).
var errUsage = errors.New("usage")

// env is what a command runs with: its arguments and standard streams.
type env struct {
	args   []string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

type command struct {
	name    string
	summary string
	run     func(e env) error
	hidden  bool
}

func commands() []command {
	return []command{
		{name: "info", summary: "show how the log is made durable on this machine and what it holds", run: runInfo},
		{name: "verify", summary: "check every record's checksum, read-only; exit 1 on corruption", run: runVerify},
		{name: "dump", summary: "print records with index, size and a preview (text, json or raw)", run: runDump},
		{name: "repair", summary: "cut the log at the first corruption, saving the cut bytes beside it", run: runRepair},
		{name: "bench", summary: "measure append throughput and latency on this machine", run: runBench},
		{name: "torture", summary: "kill a writer at random moments and check every acknowledged record", run: runTorture},
		{name: "demo", summary: "write records to a fresh log, reopen it, read them back, and show crash recovery", run: runDemo},
		{name: tortureChildName, run: runTortureChild, hidden: true},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(env{args: args[1:], stdin: stdin, stdout: stdout, stderr: stderr})
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.Is(err, errUsage):
				return 2 // the FlagSet printed the message and usage
			case errors.Is(err, errProblem), errors.Is(err, wal.ErrCorrupt):
				fmt.Fprintln(stderr, "pmwal "+c.name+":", strings.TrimPrefix(err.Error(), errProblem.Error()+": "))
				return 1
			default:
				fmt.Fprintln(stderr, "pmwal "+c.name+":", explain(err))
				return 2
			}
		}
	}
	fmt.Fprintf(stderr, "pmwal: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

// explain adds what an operator can do to the errors that have a remedy.
func explain(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, wal.ErrLocked):
		return msg + "\n(the log is open in another process; this command never takes a writer's lock: stop the writer, or work on a copy)"
	case errors.Is(err, fs.ErrNotExist):
		return msg
	case errors.Is(err, unix.ENOTDIR):
		return msg + "\n(DIR must be a log directory, not a file)"
	}
	return msg
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: pmwal COMMAND [flags]\n\ncommands:")
	for _, c := range commands() {
		if !c.hidden {
			fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
		}
	}
	fmt.Fprintln(w, "\nRun 'pmwal COMMAND --help' for a command's flags.\nExit codes: 0 fine, 1 a problem was found, 2 usage error or cannot run.")
}

// newFlags makes a FlagSet that reports errors instead of exiting.
func newFlags(name, args, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: pmwal %s %s\n", name, args)
		if about != "" {
			fmt.Fprintf(stderr, "\n%s\n\n", about)
		}
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags that may come before and after the positional
// arguments and returns the positional ones; it insists on exactly want of
// them (-1: any number).
func parse(fs *flag.FlagSet, args []string, want int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			pos = append(pos, args[1:]...)
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if want >= 0 && len(pos) != want {
		if want == 1 && len(pos) == 0 {
			fmt.Fprintf(fs.Output(), "pmwal %s: DIR is missing\n", fs.Name())
		} else {
			fmt.Fprintf(fs.Output(), "pmwal %s: want %d argument(s), got %d: %q\n", fs.Name(), want, len(pos), pos)
		}
		fs.Usage()
		return nil, fmt.Errorf("%w: want %d argument(s), got %d", errUsage, want, len(pos))
	}
	return pos, nil
}

// openReadOnly opens the log in dir without changing it. A directory that
// is missing or holds no log, a file, and a log in use are errors that
// explain themselves.
func openReadOnly(dir string, repair bool) (*wal.Log, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory: %w", dir, unix.ENOTDIR)
	}
	// The log's own segment size: with it, the read-only view keeps the
	// same spare segment a writer's Open (pmwal repair's) keeps.
	return wal.Open(dir, &wal.Options{ReadOnly: true, RepairCorruption: repair, SegmentSize: logSegmentSize(dir)})
}

// isTerminal reports whether w is a terminal.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// freshDir checks that dir, given to a command that writes its own records
// (demo, bench), is missing or empty: pointed at a real log by mistake, it
// must not append to it or truncate it.
func freshDir(dir string) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case len(ents) > 0:
		return fmt.Errorf("%s is not empty: this command writes records of its own and does not touch an existing log; give a new or empty directory", dir)
	}
	return nil
}
