// Files embedded into the executable with `import x from "…" with { type: "file" }`.
declare module "*.so.1" {
  const path: string;
  export default path;
}
declare module "*.bpf.o" {
  const path: string;
  export default path;
}
declare module "*.yaml" {
  const text: string;
  export default text;
}
