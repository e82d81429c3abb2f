// Event timestamps are CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns).
// Shown as seconds since boot like nettrace, or as wall-clock time (--date).
import { monotonicToRealtimeNs } from "../../ffi/libc";

export class Clock {
  private readonly offsetNs = monotonicToRealtimeNs();
  // The date-and-time part of the last second formatted, for iso() and
  // local(): events come many per second, and formatting a Date costs ~1 µs.
  private isoSecond = NaN;
  private isoPrefix = "";
  private localSecond = NaN;
  private localPrefix = "";

  /** "[153.345912]" or, with --date, "[2026-11-23 03:50:00.123456]". */
  stamp(ns: number, date: boolean): string {
    return date ? this.local(ns) : (ns / 1e9).toFixed(6);
  }

  /** Microseconds since the epoch (pcapng timestamps). */
  wallMicros(ns: number): number {
    return Math.floor((ns + this.offsetNs) / 1e3);
  }

  /** ISO 8601 UTC with microseconds, for JSON. */
  iso(ns: number): string {
    const wall = ns + this.offsetNs;
    const ms = Math.floor(wall / 1e6);
    const second = Math.floor(ms / 1000);
    if (second !== this.isoSecond) {
      this.isoSecond = second;
      this.isoPrefix = new Date(ms).toISOString().slice(0, -4); // "2026-11-23T03:50:00." (drop "123Z")
    }
    return `${this.isoPrefix}${String(Math.floor(wall / 1e3) % 1e6).padStart(6, "0")}Z`;
  }

  private local(ns: number): string {
    const wall = ns + this.offsetNs;
    const ms = Math.floor(wall / 1e6);
    const second = Math.floor(ms / 1000);
    if (second !== this.localSecond) {
      // Time zone changes fall on whole seconds, so one prefix holds for the second.
      const d = new Date(ms);
      const p = (n: number) => String(n).padStart(2, "0");
      this.localSecond = second;
      this.localPrefix = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.`;
    }
    return `${this.localPrefix}${String(Math.floor(wall / 1e3) % 1e6).padStart(6, "0")}`;
  }
}
