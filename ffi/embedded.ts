// The shared libraries carried inside the executable, in load order (each
// one's dependencies first). build.ts copies them from the build machine's
// Debian packages into build/lib/.
import libz from "../build/lib/libz.so.1" with { type: "file" };
import libelf from "../build/lib/libelf.so.1" with { type: "file" };
import libbpf from "../build/lib/libbpf.so.1" with { type: "file" };

export const embeddedLibraries = [
  { name: "libz.so.1", path: libz },
  { name: "libelf.so.1", path: libelf },
  { name: "libbpf.so.1", path: libbpf },
];
