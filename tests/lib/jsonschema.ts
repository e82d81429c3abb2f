// A JSON Schema checker for the keywords the README's report schema uses
// (type, const, enum, required, properties, additionalProperties: false,
// items, minItems): returns every violation with its path, so a test can
// show what differs. Its own test proves it rejects what it should.
type Schema = {
  type?: string | string[];
  const?: unknown;
  enum?: unknown[];
  required?: string[];
  properties?: Record<string, Schema>;
  additionalProperties?: boolean;
  items?: Schema;
  minItems?: number;
};

function typeOf(v: unknown): string[] {
  if (v === null) return ["null"];
  if (Array.isArray(v)) return ["array"];
  if (typeof v === "number") return Number.isInteger(v) ? ["integer", "number"] : ["number"];
  return [typeof v];
}

export function validate(schema: Schema, value: unknown, path = "$"): string[] {
  const errors: string[] = [];
  if (schema.type !== undefined) {
    const allowed = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!typeOf(value).some((t) => allowed.includes(t))) return [`${path}: ${JSON.stringify(value)} is not of type ${allowed.join("|")}`];
  }
  if ("const" in schema && value !== schema.const) errors.push(`${path}: must be ${JSON.stringify(schema.const)}`);
  if (schema.enum && !schema.enum.includes(value)) errors.push(`${path}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
  if (value && typeof value === "object" && !Array.isArray(value)) {
    const o = value as Record<string, unknown>;
    for (const k of schema.required ?? []) if (!(k in o)) errors.push(`${path}: lacks ${k}`);
    for (const [k, v] of Object.entries(o)) {
      const sub = schema.properties?.[k];
      if (sub) errors.push(...validate(sub, v, `${path}.${k}`));
      else if (schema.additionalProperties === false) errors.push(`${path}: unexpected property ${k}`);
    }
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) errors.push(`${path}: fewer than ${schema.minItems} items`);
    if (schema.items) value.forEach((v, i) => errors.push(...validate(schema.items!, v, `${path}[${i}]`)));
  }
  return errors;
}

/** The JSON Schema in the README's section "JSON report schema" (the one place it is written). */
export async function reportSchema(): Promise<Schema> {
  const readme = await Bun.file(`${import.meta.dir}/../../README.md`).text();
  const m = /### JSON report schema[\s\S]*?```json\n([\s\S]*?)```/.exec(readme);
  if (!m) throw new Error("README.md has no ```json block under '### JSON report schema'");
  return JSON.parse(m[1]!) as Schema;
}
