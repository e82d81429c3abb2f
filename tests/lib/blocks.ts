// Reads skbtrail's text output of packet lifecycles back into blocks.

export interface Block {
  skbs: string[];
  lines: string[];
  hooks: string[];
}

/** The packet blocks of the text output. */
export function blocks(stdout: string): Block[] {
  return stdout
    .split(/^\*{17} /m)
    .slice(1)
    .map((chunk) => {
      const [head, ...rest] = chunk.split("\n");
      const lines = rest.filter((l) => l.startsWith("["));
      return { skbs: head!.replace(/ \*+$/, "").split(","), lines, hooks: lines.map((l) => /^\[[^\]]+\] \[([^\] ]+) *\]/.exec(l)?.[1] ?? "?") };
    });
}

/** True when `expected` appears in `hooks` in this order (other hooks may come between). */
export function inOrder(hooks: string[], expected: string[]): boolean {
  let i = 0;
  for (const h of hooks) if (h === expected[i]) i++;
  return i === expected.length;
}

/** Fails with the whole block shown when `expected` is not found in order. */
export function expectInOrder(b: Block | undefined, expected: string[]): void {
  if (!b) throw new Error("no packet block was printed");
  if (!inOrder(b.hooks, expected)) throw new Error(`expected ${expected.join(" → ")} in this order; the block was:\n${b.lines.join("\n")}`);
}

/** The block as printed, for assertion messages: a failure shows what the kernel did. */
export function shown(b: Block | undefined): string {
  return b ? `the block was:\n${b.lines.join("\n")}` : "no packet block was printed";
}
