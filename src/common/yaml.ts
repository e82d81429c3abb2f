// YAML for knowledge files: js-yaml's core schema only (plain data, no
// tags, nothing executable), plus the line where each mapping starts so a
// mistake is reported as "file:line: key: problem".
import yaml from "js-yaml";
import { SkbtrailError, ExitCode } from "./errors";

export class KnowledgeError extends SkbtrailError {
  constructor(file: string, line: number, what: string) {
    super(`${file}:${line}: ${what}`, ExitCode.USAGE);
  }
}

export type YamlMap = Record<string, unknown>;

/** Texts parsed at build time (the knowledge files the executable carries), with their parsed form. */
const prebuilt: { text: string; root: unknown }[] = [];

/** Registers what `text` parses to: a YamlDoc of it then skips the parse (and knows no lines: such files were checked when built). */
export function parsedAlready(text: string, root: unknown): void {
  prebuilt.push({ text, root });
}

export class YamlDoc {
  private readonly starts = new WeakMap<object, number>();
  private readonly lines: string[];
  readonly root: unknown;

  constructor(
    readonly file: string,
    text: string,
  ) {
    const known = prebuilt.find((p) => p.text === text);
    if (known) {
      this.lines = [];
      this.root = known.root;
      return;
    }
    this.lines = text.split("\n");
    const open: number[] = [];
    try {
      this.root = yaml.load(text, {
        filename: file,
        schema: yaml.CORE_SCHEMA,
        listener: (event, state) => {
          const st = state as unknown as { line: number; result: unknown };
          if (event === "open") open.push(st.line);
          else {
            const line = open.pop() ?? 0;
            if (st.result && typeof st.result === "object") this.starts.set(st.result, line + 1);
          }
        },
      });
    } catch (e) {
      const mark = (e as { mark?: { line: number } }).mark;
      throw new KnowledgeError(file, (mark?.line ?? 0) + 1, `not valid YAML: ${(e as { reason?: string }).reason ?? (e as Error).message}`);
    }
  }

  /** Line of a node, or of one of its keys (searched from where the node starts). */
  line(node: unknown, key?: string): number {
    const start: number = (node !== null && typeof node === "object" ? this.starts.get(node) : undefined) ?? 1;
    if (key === undefined) return start;
    const name = key.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    // A flow mapping ({ a: 1, b: 2 }) has its keys on its first line; a
    // block mapping has each key at the start of a line of its own.
    if (new RegExp(`[{,]\\s*["']?${name}["']?\\s*:`).test(this.lines[start - 1] ?? "")) return start;
    const re = new RegExp(`^\\s*(- )?["']?${name}["']?\\s*:`);
    for (let i = start - 1; i < this.lines.length; i++) if (re.test(this.lines[i]!)) return i + 1;
    return start;
  }

  error(node: unknown, key: string | undefined, message: string): KnowledgeError {
    return new KnowledgeError(this.file, this.line(node, key), key ? `${key}: ${message}` : message);
  }

  /** The node as a mapping with only `allowed` keys and all `required` ones. */
  map(node: unknown, what: string, allowed: string[], required: string[] = []): YamlMap {
    if (!node || typeof node !== "object" || Array.isArray(node)) throw this.error(node, undefined, `${what} must be a mapping`);
    const m = node as YamlMap;
    for (const k of Object.keys(m)) if (!allowed.includes(k)) throw this.error(m, k, `unknown key in ${what} (allowed: ${allowed.join(", ")})`);
    for (const k of required) if (!(k in m)) throw this.error(m, undefined, `${what} lacks the key '${k}'`);
    return m;
  }

  string(m: YamlMap, key: string, pattern?: RegExp, hint?: string): string {
    const v = m[key];
    if (typeof v !== "string" || v.trim() === "") throw this.error(m, key, "must be a non-empty string");
    if (pattern && !pattern.test(v)) throw this.error(m, key, `'${v}' is not valid${hint ? `: ${hint}` : ""}`);
    return v;
  }

  optionalString(m: YamlMap, key: string, pattern?: RegExp, hint?: string): string | undefined {
    return m[key] === undefined ? undefined : this.string(m, key, pattern, hint);
  }

  boolean(m: YamlMap, key: string, fallback: boolean): boolean {
    const v = m[key];
    if (v === undefined) return fallback;
    if (typeof v !== "boolean") throw this.error(m, key, "must be true or false");
    return v;
  }

  list(m: YamlMap, key: string): unknown[] {
    const v = m[key];
    if (!Array.isArray(v) || v.length === 0) throw this.error(m, key, "must be a non-empty list");
    return v;
  }
}
