// Every error a user can see is one line: what is wrong and what to do.
// The exit code tells scripts which kind of failure it was.

export const ExitCode = {
  OK: 0,
  /** --diag found at least one error-level finding. */
  FINDING: 1,
  /** Bad command line or knowledge file: nothing was attached. */
  USAGE: 2,
  /** The machine lacks something skbtrail needs (root, BTF, bpf(), file descriptors). */
  ENVIRONMENT: 3,
  /** Loading or attaching BPF failed, or another runtime failure. */
  RUNTIME: 4,
  /** The output could not be written (disk full, I/O error): tracing stopped, nothing stays attached. */
  OUTPUT: 5,
  /** skbtrail run: the command succeeded but drops the policy does not allow were seen. */
  UNEXPECTED_DROPS: 6,
  /** skbtrail run: the command exists but cannot be executed (as a shell says). */
  COMMAND_NOT_EXECUTABLE: 126,
  /** skbtrail run: no such command (as a shell says). */
  COMMAND_NOT_FOUND: 127,
} as const;

export class SkbtrailError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    /** Extra detail shown with -v (e.g. the verifier log). */
    readonly detail?: string,
  ) {
    super(message);
  }
}

/** A bad flag or value: name the flag and how to fix it. */
export const usageError = (message: string) => new SkbtrailError(message, ExitCode.USAGE);

export const environmentError = (message: string) => new SkbtrailError(message, ExitCode.ENVIRONMENT);

const SHOWN_MAX = 60;

/**
 * A user's argument as an error message may echo it: control characters
 * escaped (they could rewrite the terminal) and cut when very long.
 */
export function shown(text: string): string {
  const cut = text.length > SHOWN_MAX ? `${text.slice(0, SHOWN_MAX)}…` : text;
  return cut.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}
