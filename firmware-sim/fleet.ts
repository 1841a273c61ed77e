/**
 * Fleet mode (issue 8): N lightweight devices without video load one cloud.
 * Each device has its own serial, claims once (POST /v1/device/claim), then
 * on its own schedule presigns, PUTs and completes a synthetic clip of the
 * given size, and, when the cloud names an MQTT broker in its claim answer,
 * publishes alerts at the given rate. Every request is timed; the result is
 * a per-route summary (firmware-sim/fleet-stats.ts).
 *
 * What keeps 1,000 devices cheap in one process: one random buffer for every
 * clip (its MD5 and SHA-256 computed once), fresh clip ids and start times per
 * clip, one keep-alive HTTP pool (firmware-sim/fleet-http.ts), and timers
 * instead of anything per device that runs between uploads. Starts are
 * jittered over one interval, so the devices do not fire in lockstep.
 *
 * Two phases: every device claims first (a bounded number at once), then the
 * run starts and lasts `durationMs` (or until `signal` aborts). Uploads under
 * way when the run ends are finished, never cut.
 */
import { createHash, randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { PresignResponse, type ClaimResponse, type PresignRequest } from '../shared/contracts/index.js';
import { newClipId } from '../shared/ids.js';
import { DEFAULT_PART_BYTES, MIN_PART_BYTES, splitIntoParts } from '../shared/multipart.js';
import { FleetHttp, type HttpOutcome } from './fleet-http.js';
import { FleetMqttDevice } from './fleet-mqtt.js';
import { FleetStats, formatProgress, summarize, type FleetRoute, type FleetSummary } from './fleet-stats.js';

export interface FleetDeviceSpec {
  serial: string;
  /** a one-time bind code of the account the device is claimed for */
  bindCode: string;
}

export interface FleetOptions {
  /** the cloud's base URL */
  cloudUrl: string;
  devices: readonly FleetDeviceSpec[];
  clipBytes: number;
  /** each device uploads a clip this often */
  everyMs: number;
  /** each device publishes an alert this often; 0 or absent: none */
  alertsEveryMs?: number;
  /** the run's length after the claims; absent: until `signal` aborts */
  durationMs?: number;
  /**
   * A pause between the claims and the run, so that what the claims started
   * (1,000 MQTT sessions saying "online", say) is over before anything is
   * measured; default 0.
   */
  settleMs?: number;
  signal?: AbortSignal;
  model?: string;
  /** claims (and MQTT connects) in flight at once; default 32 */
  claimConcurrency?: number;
  /** one request's limit, answer included; default 30 s */
  timeoutMs?: number;
  /** HTTP sockets per origin; default: one per device (firmware-sim/fleet-http.ts says why) */
  maxSockets?: number;
  /** a progress line this often; default 5 s */
  progressEveryMs?: number;
  onProgress?: (line: string) => void;
  /** called once, as the run starts (after the claims and the settle pause): a benchmark starts its meters here */
  onRunStart?: () => void;
  /** one-off explanations: alerts switched off, the hint for a rate-limited claim */
  onNotice?: (line: string) => void;
  /** for the jitter; default Math.random */
  random?: () => number;
}

export interface FleetResult {
  summary: FleetSummary;
  /** the clips completed, per serial */
  clips: Map<string, string[]>;
}

interface Claimed {
  serial: string;
  auth: string;
  mqtt: ClaimResponse['mqtt'];
  link?: FleetMqttDevice;
  lastClipId?: string;
}

/** Hints for answers whose cause is in the setup rather than the cloud: said once each. */
const HINTS: Record<string, string> = {
  RATE_LIMITED:
    'the cloud limits claims per client address (rateLimits.claimPerIp, default 100 per 15 minutes; claimPerSerial 10): a fleet from one address needs them raised in the cloud\'s config',
  CAMERA_LIMIT_REACHED: "the account's plan allows fewer cameras than the fleet has devices: choose a plan with more cameras, or use bind codes of several accounts (--bind-codes-file)",
  BIND_CODE_INVALID: 'a bind code is unknown, used or expired (they last 10 minutes): make fresh ones',
  DEVICE_BOUND_ELSEWHERE: 'a serial is bound to another account: use another --serial-prefix',
  STORAGE_CAP_REACHED: "the account's storage cap is reached: the plan's storageBytes limits how long a fleet can run",
  PLAN_REQUIRED: 'the account has no plan: choose one (PUT /v1/account/plan) before the run',
};

/** The synthetic clip every device sends: random bytes (nothing compresses them away), hashed once. */
function syntheticClip(bytes: number): { body: Buffer; md5: string; sha256: string; multipart?: PresignRequest['multipart'] } {
  const body = randomBytes(bytes);
  const md5 = createHash('md5').update(body).digest('base64');
  const sha256 = createHash('sha256').update(body).digest('hex');
  // as the agent: above the smallest part size the device declares its parts, and the cloud decides
  if (bytes <= MIN_PART_BYTES) return { body, md5, sha256 };
  const parts = splitIntoParts(bytes, DEFAULT_PART_BYTES).map((p) => ({
    md5: createHash('md5').update(body.subarray(p.offset, p.offset + p.length)).digest('base64'),
  }));
  return { body, md5, sha256, multipart: { partBytes: DEFAULT_PART_BYTES, parts } };
}

/** resolves at `atMs` (performance.now() time) or when the signal aborts, whichever is first */
function sleepUntil(atMs: number, signal: AbortSignal): Promise<void> {
  const ms = atMs - performance.now();
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** runs `fn` over `items`, at most `limit` at once, stopping early when the signal aborts */
async function pool<T>(items: readonly T[], limit: number, signal: AbortSignal, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length && !signal.aborted) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export async function runFleet(opts: FleetOptions): Promise<FleetResult> {
  const base = opts.cloudUrl.replace(/\/+$/, '');
  const random = opts.random ?? Math.random;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const concurrency = opts.claimConcurrency ?? 32;
  const progressEveryMs = opts.progressEveryMs ?? 5000;
  const alertsEveryMs = opts.alertsEveryMs ?? 0;
  const notice = opts.onNotice ?? (() => undefined);
  const progress = opts.onProgress ?? (() => undefined);
  // our own controller: the caller's signal, and the end of the run
  const stop = new AbortController();
  // every sleeping device listens to it
  setMaxListeners(0, stop.signal);
  const onAbort = (): void => stop.abort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) stop.abort();

  const stats = new FleetStats();
  const http = new FleetHttp({ maxSockets: opts.maxSockets ?? Math.max(1, opts.devices.length), timeoutMs });
  const clip = syntheticClip(opts.clipBytes);
  const clips = new Map<string, string[]>();
  const hinted = new Set<string>();
  const record = (route: FleetRoute, o: { ok: boolean; ms: number; code?: string }): void => {
    if (o.ok) {
      stats.route(route).ok(o.ms);
      return;
    }
    const code = o.code ?? 'UNKNOWN';
    stats.route(route).fail(code);
    const hint = HINTS[code];
    if (hint && !hinted.has(code)) {
      hinted.add(code);
      notice(`${route} answered ${code}: ${hint}`);
    }
  };

  const claimed: Claimed[] = [];
  try {
    // ---------------------------------------------------------------- claims
    const claimStart = performance.now();
    let lastClaimProgress = claimStart;
    await pool(opts.devices, concurrency, stop.signal, async (d) => {
      const r = await http.json('POST', `${base}/v1/device/claim`, { serial: d.serial, model: opts.model ?? 'SIM-FLEET', bindCode: d.bindCode });
      record('claim', r);
      if (r.ok) {
        const c = r.body as ClaimResponse;
        claimed.push({ serial: d.serial, auth: `Device ${d.serial}:${c.deviceToken}`, mqtt: c.mqtt });
      }
      if (performance.now() - lastClaimProgress >= progressEveryMs) {
        lastClaimProgress = performance.now();
        progress(`fleet: ${claimed.length}/${opts.devices.length} devices claimed, ${stats.errors} errors`);
      }
    });

    // ---------------------------------------------------------------- MQTT
    let alertsOff: string | null = null;
    if (alertsEveryMs > 0 && claimed.length > 0) {
      const url = claimed[0]?.mqtt.url;
      if (!url) {
        alertsOff = "the cloud's claim answer names no MQTT broker (mqtt.url): this cloud takes no alerts over MQTT yet";
        notice(`alerts off: ${alertsOff}`);
      } else {
        await pool(claimed, concurrency, stop.signal, async (c) => {
          const { device, outcome } = await FleetMqttDevice.connect(c.mqtt.url ?? url, { serial: c.serial, ...c.mqtt }, timeoutMs);
          record('mqtt connect', outcome);
          if (device) c.link = device;
        });
      }
    }
    const claimSeconds = (performance.now() - claimStart) / 1000;
    if (opts.settleMs) await sleepUntil(performance.now() + opts.settleMs, stop.signal);

    // ---------------------------------------------------------------- the run
    opts.onRunStart?.();
    const t0 = performance.now();
    const endAt = opts.durationMs === undefined ? Infinity : t0 + opts.durationMs;
    if (opts.durationMs !== undefined) {
      const endTimer = setTimeout(() => stop.abort(), opts.durationMs);
      stop.signal.addEventListener('abort', () => clearTimeout(endTimer), { once: true });
    }
    let uploads = 0;
    let inFlight = 0;
    let late = 0;
    let alerts = 0;

    const upload = async (c: Claimed): Promise<void> => {
      const now = Date.now();
      const clipId = newClipId(now);
      const body: PresignRequest = {
        clipId,
        start: new Date(now).toISOString(),
        durationMs: Math.min(opts.everyMs, 24 * 3600_000),
        size: opts.clipBytes,
        md5: clip.md5,
        sha256: clip.sha256,
        kind: 'continuous',
        ...(clip.multipart ? { multipart: clip.multipart } : {}),
      };
      const presign = await http.json('POST', `${base}/v1/device/uploads`, body, c.auth);
      const parsed = presign.ok ? PresignResponse.safeParse(presign.body) : undefined;
      record('presign', parsed && !parsed.success ? { ok: false, ms: presign.ms, code: 'RESPONSE_INVALID' } : presign);
      if (!parsed?.success) return;
      const answer = parsed.data;
      let completeBody: unknown;
      if (answer.mode === 'multipart') {
        const done: { partNumber: number; etag: string }[] = [];
        for (const part of answer.parts) {
          if (part.etag) {
            done.push({ partNumber: part.partNumber, etag: part.etag });
            continue;
          }
          const put = await http.request('PUT', part.url, part.headers, clip.body.subarray(part.offset, part.offset + part.length));
          record('PUT', put);
          if (!put.ok) return;
          const etag = put.headers.etag;
          if (typeof etag === 'string') done.push({ partNumber: part.partNumber, etag });
        }
        completeBody = done.length === answer.parts.length ? { parts: done } : undefined;
      } else {
        const put: HttpOutcome = await http.request('PUT', answer.url, answer.headers, clip.body);
        record('PUT', put);
        if (!put.ok) return;
      }
      const complete = await http.json('POST', `${base}/v1/device/uploads/${clipId}/complete`, completeBody, c.auth);
      record('complete', complete);
      if (!complete.ok) return;
      uploads++;
      c.lastClipId = clipId;
      let list = clips.get(c.serial);
      if (!list) clips.set(c.serial, (list = []));
      list.push(clipId);
    };

    const uploadLoop = async (c: Claimed): Promise<void> => {
      let due = t0 + random() * opts.everyMs;
      for (;;) {
        await sleepUntil(due, stop.signal);
        if (stop.signal.aborted || due >= endAt) return;
        // behind schedule by more than a second: the cloud (or this process) is not keeping up
        if (performance.now() - due > 1000) late++;
        inFlight++;
        try {
          await upload(c);
        } finally {
          inFlight--;
        }
        // a device that fell behind sends its next clip at once, as a queue on a camera would
        due += opts.everyMs;
      }
    };

    const alertLoop = async (c: Claimed): Promise<void> => {
      const link = c.link;
      if (!link) return;
      let due = t0 + random() * alertsEveryMs;
      for (;;) {
        await sleepUntil(due, stop.signal);
        if (stop.signal.aborted || due >= endAt) return;
        const r = await link.publishAlert(c.lastClipId);
        record('alert publish', r);
        if (r.ok) alerts++;
        due = Math.max(due + alertsEveryMs, performance.now());
      }
    };

    let lastTick = t0;
    let lastUploads = 0;
    const ticker = setInterval(() => {
      const now = performance.now();
      progress(
        formatProgress({
          elapsedSeconds: (now - t0) / 1000,
          uploads,
          recentUploads: uploads - lastUploads,
          recentSeconds: (now - lastTick) / 1000,
          errors: stats.errors,
          inFlight,
          alerts,
        }),
      );
      lastTick = now;
      lastUploads = uploads;
    }, progressEveryMs);
    try {
      await Promise.all([...claimed.map(uploadLoop), ...claimed.map(alertLoop)]);
    } finally {
      clearInterval(ticker);
    }
    const runSeconds = (performance.now() - t0) / 1000;
    return {
      summary: summarize(stats, { devices: opts.devices.length, claimSeconds, runSeconds, lateUploads: late, alertsOff }),
      clips,
    };
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    await Promise.all(claimed.map((c) => c.link?.close()));
    http.close();
  }
}
