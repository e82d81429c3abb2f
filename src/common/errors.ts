// Every error a user can see is one line: what is wrong and what to do.
// The exit code tells scripts which kind of failure it was.

export const ExitCode = {
  OK: 0,
  /** --diag found at least one error-level finding. */
  FINDING: 1,
  /** Bad command line: nothing was attached. */
  USAGE: 2,
  /** The machine lacks something skbtrail needs (root, BTF, bpf()). */
  ENVIRONMENT: 3,
  /** Loading or attaching BPF failed, or another runtime failure. */
  RUNTIME: 4,
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
