// External programs some tests read their output with (xmllint, tshark,
// tcpdump): found on PATH, or the test is skipped with the reason printed;
// in CI (CI=true, after .ci/setup installed them) a missing one fails.
export function tool(name: string, apt: string): boolean {
  if (Bun.which(name)) return true;
  if (process.env.CI === "true" || process.env.SKBTRAIL_REQUIRE_KERNEL === "1") throw new Error(`${name} is required in CI: apt-get install ${apt} (.ci/setup does)`);
  console.warn(`SKIPPED tests that read with ${name}: not installed (apt-get install ${apt})`);
  return false;
}
