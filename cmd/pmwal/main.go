// Command pmwal is the operator's tool for pmwal logs.
//
// Usage:
//
//	pmwal demo [--dir DIR] [--persist MODE] [--records N] [--keep]
//
// Exit codes: 0 fine, 1 a problem was found, 2 usage error or cannot run.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// errProblem marks a failure that is a finding (exit 1), not a usage error.
var errProblem = errors.New("problem found")

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"demo", "write records to a fresh log, reopen it, read them back, and show crash recovery", runDemo},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(args[1:], stdout, stderr)
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.Is(err, errProblem):
				fmt.Fprintln(stderr, "pmwal:", err)
				return 1
			default:
				fmt.Fprintln(stderr, "pmwal:", err)
				return 2
			}
		}
	}
	fmt.Fprintf(stderr, "pmwal: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: pmwal COMMAND [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'pmwal COMMAND --help' for a command's flags.")
}

// newFlags makes a FlagSet that reports errors instead of exiting.
func newFlags(name, args string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: pmwal %s %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}
