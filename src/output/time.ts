// Event timestamps are CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns).
// Shown as seconds since boot like nettrace, or as wall-clock time (--date).
import { monotonicToRealtimeNs } from "../../ffi/libc";

export class Clock {
  private readonly offsetNs = monotonicToRealtimeNs();

  /** "[153.345912]" or, with --date, "[2026-11-23 03:50:00.123456]". */
  stamp(ns: number, date: boolean): string {
    return date ? this.local(ns) : (ns / 1e9).toFixed(6);
  }

  /** ISO 8601 UTC with microseconds, for JSON. */
  iso(ns: number): string {
    const wall = ns + this.offsetNs;
    const d = new Date(Math.floor(wall / 1e6));
    const micros = String(Math.floor(wall / 1e3) % 1e6).padStart(6, "0");
    return d.toISOString().replace(/\.\d{3}Z$/, `.${micros}Z`);
  }

  private local(ns: number): string {
    const wall = ns + this.offsetNs;
    const d = new Date(Math.floor(wall / 1e6));
    const p = (n: number, w = 2) => String(n).padStart(w, "0");
    const micros = p(Math.floor(wall / 1e3) % 1e6, 6);
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${micros}`;
  }
}
