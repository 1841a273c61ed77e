/**
 * What a fleet run measured, per route, and the two ways it is shown: a
 * progress line every few seconds and the closing table. Pure: no I/O, no
 * clock (times are passed in), so the numbers and the table are unit-tested.
 */

/** The steps a fleet device takes, in the order the table lists them. */
export const FLEET_ROUTES = ['claim', 'presign', 'PUT', 'complete', 'mqtt connect', 'alert publish'] as const;
export type FleetRoute = (typeof FLEET_ROUTES)[number];

/** The error code of a request with no answer: the connection failed, or no answer came in time. */
export const NETWORK = 'NETWORK';
export const TIMEOUT = 'TIMEOUT';

/**
 * One route's tally. Latencies are kept for the requests that succeeded: a
 * refusal or a timeout is counted under its code, and its time would only
 * blur the percentiles of the work the cloud did.
 */
export class RouteStats {
  private latencies: number[] = [];
  private sorted = true;
  readonly errors = new Map<string, number>();

  /** a request that succeeded, and how long it took (ms) */
  ok(ms: number): void {
    this.latencies.push(ms);
    this.sorted = false;
  }

  /** a request that failed, by its code (the catalogue code of the answer, the store's, HTTP_<status>, NETWORK or TIMEOUT) */
  fail(code: string): void {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
  }

  get succeeded(): number {
    return this.latencies.length;
  }

  get failed(): number {
    let n = 0;
    for (const v of this.errors.values()) n += v;
    return n;
  }

  get count(): number {
    return this.succeeded + this.failed;
  }

  /** the nearest-rank percentile of the successful requests' latencies, or null with none */
  percentile(p: number): number | null {
    if (!this.sorted) {
      this.latencies.sort((a, b) => a - b);
      this.sorted = true;
    }
    return percentile(this.latencies, p);
  }
}

/** Nearest rank: the smallest value with at least p% of the values at or below it; null for none. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

export class FleetStats {
  readonly routes = new Map<FleetRoute, RouteStats>(FLEET_ROUTES.map((r) => [r, new RouteStats()]));

  route(r: FleetRoute): RouteStats {
    return this.routes.get(r) as RouteStats;
  }

  /** failed requests over every route */
  get errors(): number {
    let n = 0;
    for (const s of this.routes.values()) n += s.failed;
    return n;
  }
}

export interface RouteSummary {
  route: FleetRoute;
  /** requests made (succeeded + failed) */
  count: number;
  succeeded: number;
  /** requests a second over the route's phase (claims: the claim phase; the rest: the run) */
  perSecond: number;
  p50Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
  errors: Record<string, number>;
}

export interface FleetSummary {
  devices: number;
  /** devices whose claim succeeded */
  claimed: number;
  /** the claims, and the MQTT connects when alerts are on */
  claimSeconds: number;
  /** from the first scheduled upload to the end of the last one */
  runSeconds: number;
  /** clips presigned, stored and completed */
  uploads: number;
  uploadsPerSecond: number;
  /** uploads that started more than a second after their scheduled time (the fleet fell behind) */
  lateUploads: number;
  /** failed requests over every route */
  errors: number;
  /** why alerts were not sent, when they were asked for and not sent; null when sent or not asked for */
  alertsOff: string | null;
  /** routes with at least one request, in FLEET_ROUTES order */
  routes: RouteSummary[];
}

export interface SummaryInput {
  devices: number;
  claimSeconds: number;
  runSeconds: number;
  lateUploads: number;
  alertsOff: string | null;
}

const CLAIM_PHASE: ReadonlySet<FleetRoute> = new Set(['claim', 'mqtt connect']);

export function summarize(stats: FleetStats, input: SummaryInput): FleetSummary {
  const routes: RouteSummary[] = [];
  for (const route of FLEET_ROUTES) {
    const s = stats.route(route);
    if (s.count === 0) continue;
    const seconds = CLAIM_PHASE.has(route) ? input.claimSeconds : input.runSeconds;
    routes.push({
      route,
      count: s.count,
      succeeded: s.succeeded,
      perSecond: seconds > 0 ? s.count / seconds : 0,
      p50Ms: s.percentile(50),
      p95Ms: s.percentile(95),
      p99Ms: s.percentile(99),
      errors: Object.fromEntries([...s.errors.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))),
    });
  }
  const uploads = stats.route('complete').succeeded;
  return {
    devices: input.devices,
    claimed: stats.route('claim').succeeded,
    claimSeconds: input.claimSeconds,
    runSeconds: input.runSeconds,
    uploads,
    uploadsPerSecond: input.runSeconds > 0 ? uploads / input.runSeconds : 0,
    lateUploads: input.lateUploads,
    errors: stats.errors,
    alertsOff: input.alertsOff,
    routes,
  };
}

const fixed = (v: number | null, digits: number): string => (v === null ? '-' : v.toFixed(digits));

/** columns padded to the widest cell; the first column left-aligned, the rest right-aligned */
export function alignColumns(rows: readonly (readonly string[])[], leftAligned = 1): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) =>
    row
      .map((cell, i) => (i < leftAligned ? cell.padEnd(widths[i] as number) : cell.padStart(widths[i] as number)))
      .join('  ')
      .trimEnd(),
  );
}

/**
 * The closing table: one row per route (count, req/s, p50/p95/p99 ms, errors),
 * then the errors by code, route by route, then a line of totals.
 */
export function formatFleetTable(s: FleetSummary): string {
  const rows: string[][] = [['route', 'count', 'req/s', 'p50 ms', 'p95 ms', 'p99 ms', 'errors']];
  for (const r of s.routes) {
    rows.push([r.route, String(r.count), r.perSecond.toFixed(1), fixed(r.p50Ms, 1), fixed(r.p95Ms, 1), fixed(r.p99Ms, 1), String(r.count - r.succeeded)]);
  }
  const lines = alignColumns(rows);
  lines.splice(1, 0, '-'.repeat(Math.max(...lines.map((l) => l.length))));
  const byCode = s.routes.filter((r) => r.count > r.succeeded);
  if (byCode.length > 0) {
    lines.push('', 'errors by code:');
    for (const r of byCode) {
      lines.push(`  ${r.route}: ${Object.entries(r.errors).map(([code, n]) => `${code} ${n}`).join(', ')}`);
    }
  }
  lines.push(
    '',
    `${s.claimed}/${s.devices} devices claimed${s.routes.some((r) => r.route === 'mqtt connect') ? ' and connected' : ''} in ${s.claimSeconds.toFixed(1)} s; ` +
      `${s.uploads} uploads in ${s.runSeconds.toFixed(1)} s (${s.uploadsPerSecond.toFixed(1)}/s), ` +
      `${s.lateUploads} late; ${s.errors} errors`,
  );
  if (s.alertsOff) lines.push(`alerts off: ${s.alertsOff}`);
  return lines.join('\n');
}

export interface ProgressInput {
  elapsedSeconds: number;
  uploads: number;
  /** uploads completed since the last progress line, and the seconds since it */
  recentUploads: number;
  recentSeconds: number;
  errors: number;
  inFlight: number;
  alerts: number;
}

/** One line every few seconds while the fleet runs. */
export function formatProgress(p: ProgressInput): string {
  const rate = p.recentSeconds > 0 ? p.recentUploads / p.recentSeconds : 0;
  return (
    `fleet ${p.elapsedSeconds.toFixed(0).padStart(4)} s: ${rate.toFixed(1)} uploads/s, ` +
    `${p.uploads} uploads, ${p.errors} errors, ${p.inFlight} in flight, ${p.alerts} alerts`
  );
}

/**
 * A duration as the CLI and the bench take it: `500ms`, `10s`, `2m`, `1h`, or
 * a bare number of seconds. Null when it is none of these.
 */
export function parseDuration(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) return null;
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const ms = unit === 'ms' ? n : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n * 3_600_000;
  return Number.isFinite(ms) ? Math.round(ms) : null;
}
