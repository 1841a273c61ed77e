/**
 * Durations and sizes as the simulator's command line and its stdin take
 * them: `500ms`, `30s`, `2m`, `1.5h`, `7d`, or a bare number of seconds;
 * `300000`, `300k`, `5M`, `1G` bytes. Pure; null for anything else.
 */

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration ≥ 0 in ms: `500ms`, `30s`, `2m`, `1.5h`, `7d`, or seconds without a unit. */
export function parseDuration(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) return null;
  const ms = Number(m[1]) * (UNIT_MS[m[2] ?? 's'] ?? 1000);
  return Number.isFinite(ms) ? Math.round(ms) : null;
}

/** A signed duration in ms, for a clock skew: `+2h`, `-8d`, `+90s`, `0`. */
export function parseSignedDuration(text: string): number | null {
  const m = /^([+-]?)(.+)$/.exec(text.trim());
  if (!m) return null;
  const ms = parseDuration(m[2] ?? '');
  if (ms === null) return null;
  return m[1] === '-' ? -ms : ms;
}

/** 1500 → "1.5s", 7_200_000 → "2h", -691_200_000 → "-8d": the shortest exact form. */
export function formatDuration(ms: number): string {
  const sign = ms < 0 ? '-' : '';
  const a = Math.abs(ms);
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (a >= size && (a % size === 0 || (unit === 's' && (a * 10) % size === 0))) return `${sign}${a / size}${unit}`;
  }
  return `${sign}${a}ms`;
}

const UNIT_BYTES: Record<string, number> = { '': 1, k: 1000, K: 1024, m: 1_000_000, M: 1024 ** 2, g: 1_000_000_000, G: 1024 ** 3 };

/** A byte count: `300000`, `300k` (×1000), `300K` (×1024), `5M` (MiB), `1G` (GiB). */
export function parseBytes(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)([kKmMgG]?)B?$/.exec(text.trim());
  if (!m) return null;
  const n = Math.round(Number(m[1]) * (UNIT_BYTES[m[2] ?? ''] ?? 1));
  return Number.isSafeInteger(n) ? n : null;
}
