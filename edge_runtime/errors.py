"""Error types and the documented exit codes of the ``edge-seg`` command."""

# Exit codes (documented in README.md, "Exit codes").
EXIT_OK = 0             # every input was processed
EXIT_SOME_FAILED = 1    # the run finished, but one or more inputs failed (listed at the end)
EXIT_USAGE = 2          # bad command line (click's own usage errors also exit 2)
EXIT_BUNDLE = 3         # the model bundle is missing, tampered, unknown or cannot be loaded
EXIT_MISSING_EXTRA = 4  # the command needs an optional extra that is not installed
EXIT_GATE = 5           # convert: the converted model lost more accuracy than allowed
EXIT_INCOMPLETE = 6     # the run did not finish: stdout closed or full (what was done: stderr)
EXIT_INTERRUPTED = 130  # interrupted (Ctrl-C / SIGINT); a summary of what was done on stderr


class EdgeSegError(Exception):
    """Base class: a user-facing problem with a one-line message."""

    exit_code = EXIT_USAGE


class InputImageError(EdgeSegError):
    """One input scan cannot be used (the batch goes on)."""

    exit_code = EXIT_SOME_FAILED

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class BundleError(EdgeSegError):
    """A model bundle cannot be trusted or loaded."""

    exit_code = EXIT_BUNDLE


class MissingExtraError(EdgeSegError):
    """An optional dependency is missing; the message says what to install."""

    exit_code = EXIT_MISSING_EXTRA
