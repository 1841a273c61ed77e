/**
 * The agent in the field (issue 4): the real Agent recording a real
 * SimCamera with real ffmpeg, uploading to a real cloud through a network the
 * test breaks (test/helpers/tcp-proxy.ts).
 *
 * - outage: the cloud unreachable for 13 s (refused, then blackholed); the
 *   device knocks a bounded number of times, and once the network returns
 *   every closed segment is in the cloud exactly once, byte-identical;
 * - full disk: a quota of a few segments; recording carries on, uploaded
 *   clips go first, and with the cloud unreachable the footage lost is
 *   continuous before events, counted, and shown by `agent status`;
 *
 * Corruption (a segment altered on disk after it was journaled) is in
 * corruption.test.ts, against every store that runs here.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, type ClipQueued } from '../../agent/agent.js';
import { loadAgentConfig, type AgentConfig, type AgentConfigInput } from '../../agent/config.js';
import { Journal, type ClipRow } from '../../agent/journal/journal.js';
import { parseSegmentListLine } from '../../agent/recorder/segment-list.js';
import { readDeviceStatus, type DeviceStatus } from '../../agent/status.js';
import type { EvictionReport } from '../../agent/storage/keeper.js';
import type { RetryPolicy } from '../../agent/uploader/retry-policy.js';
import type { ClipUploaded, UploadFailed } from '../../agent/uploader/uploader.js';
import { SimCamera } from '../../firmware-sim/camera.js';
import { hashFile } from '../../shared/hash.js';
import { createLogger } from '../../shared/log.js';
import { createBindCode, registerAndLogin, setPlan, startTestCloud, type TestCloud } from '../helpers/cloud.js';
import { waitFor } from '../helpers/media.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

/**
 * Short delays, so an outage of seconds plays out like one of hours. The
 * request bound below is derived from these numbers.
 */
const POLICY: Partial<RetryPolicy> & Pick<RetryPolicy, 'maxRetries' | 'parkMs'> = {
  minDelayMs: 200,
  maxDelayMs: 1000,
  factor: 2,
  jitter: 0.2,
  maxRetries: 3,
  parkMs: 2000,
};
const CONCURRENCY = 2;
const FULL_DISK_SERIAL = 'SIMFULLDSK01';

/**
 * The most connections the device may open while the cloud is unreachable
 * for `outageMs`. During an outage every attempt fails at its first request
 * (presign), and the proxy cuts pooled connections when the outage begins,
 * so an attempt is one new connection. One upload task makes at most
 * maxRetries + 1 attempts, then parks the whole queue for parkMs. While no
 * task has ended, at most CONCURRENCY tasks run (slots free only when a task
 * ends); after that, new tasks start only when a park expires, at most
 * CONCURRENCY at a time, and expiries are at least parkMs apart. So at most
 * CONCURRENCY × (1 + floor(outageMs / parkMs)) tasks, each at most
 * maxRetries + 1 connections. A hot loop would be thousands.
 */
function outageConnectionBound(outageMs: number): number {
  return CONCURRENCY * (POLICY.maxRetries + 1) * (1 + Math.floor(outageMs / POLICY.parkMs));
}

const logger = createLogger({ level: 'silent' });
let root: string;
let camera: SimCamera;
let cloud: TestCloud;
let proxy: TcpProxy;
/** the cloud without the proxy, for the test's own calls */
let direct: string;
let token: string;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'camvault-outage-'));
  proxy = await TcpProxy.start();
  cloud = await startTestCloud({ publicUrl: proxy.url });
  const port = (cloud.app.server.address() as AddressInfo).port;
  proxy.target = { host: '127.0.0.1', port };
  direct = `http://127.0.0.1:${port}`;
  ({ token } = await registerAndLogin(direct));
  await setPlan(direct, token, 'premium');
  // motion events name the camera's serial: the full-disk test's agent has it
  camera = await SimCamera.start({ serial: FULL_DISK_SERIAL, width: 320, height: 180, fps: 10, gopSeconds: 1, motionEverySec: 0, logger });
}, 60_000);

afterAll(async () => {
  await camera?.stop();
  await cloud?.close();
  await proxy?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

interface Running {
  agent: Agent;
  config: AgentConfig;
  queued: ClipQueued[];
  uploaded: ClipUploaded[];
  failed: UploadFailed[];
  evicted: EvictionReport[];
  logs: { level: number; msg: string; code?: string; clipId?: string }[];
}

async function startAgent(serial: string, over: Partial<AgentConfigInput> = {}): Promise<Running> {
  proxy.setMode('forward');
  const config = loadAgentConfig({
    env: {},
    overrides: {
      serial,
      cloudUrl: proxy.url,
      input: camera.streamUrl,
      eventsUrl: camera.eventsUrl,
      dataDir: join(root, serial),
      segmentSeconds: 2,
      development: true,
      uploadConcurrency: CONCURRENCY,
      bindCode: await createBindCode(direct, token),
      ...over,
    },
  });
  const logs: Running['logs'] = [];
  const log = createLogger({ level: 'info' }, { write: (s: string) => logs.push(JSON.parse(s)) });
  const agent = await Agent.start({ config, logger: log, retryPolicy: POLICY });
  const r: Running = { agent, config, queued: [], uploaded: [], failed: [], evicted: [], logs };
  agent.on('clip-queued', (e: ClipQueued) => r.queued.push(e));
  agent.on('clip-uploaded', (e: ClipUploaded) => r.uploaded.push(e));
  agent.on('upload-failed', (e: UploadFailed) => r.failed.push(e));
  agent.on('evicted', (e: EvictionReport) => r.evicted.push(e));
  return r;
}

function rows(dataDir: string): ClipRow[] {
  const j = Journal.open(dataDir, { readonly: true });
  try {
    return j.listClips();
  } finally {
    j.close();
  }
}

function row(dataDir: string, id: string): ClipRow | undefined {
  const j = Journal.open(dataDir, { readonly: true });
  try {
    return j.getClip(id);
  } finally {
    j.close();
  }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- response bodies are checked field by field
async function cloudClips(serial: string): Promise<any[]> {
  const res = await fetch(`${direct}/v1/clips?serial=${serial}&limit=500`, { headers: { authorization: `Bearer ${token}` } });
  expect(res.status).toBe(200);
  return ((await res.json()) as { clips: unknown[] }).clips;
}

/** Downloads a clip through its view URL and hashes it. */
async function cloudSha256(clipId: string): Promise<string> {
  const view = (await (await fetch(`${direct}/v1/clips/${clipId}/view`, { headers: { authorization: `Bearer ${token}` } })).json()) as { url: string };
  const res = await fetch(view.url);
  expect(res.status).toBe(200);
  return createHash('sha256').update(Buffer.from(await res.arrayBuffer())).digest('hex');
}

/** Every segment ffmpeg listed as closed, from the segment lists in the folder. */
function listedSegments(dataDir: string): string[] {
  const dir = join(dataDir, 'segments', 'main');
  const names: string[] = [];
  for (const list of readdirSync(dir).filter((n) => n.endsWith('.csv'))) {
    const lines = readFileSync(join(dir, list), 'utf8').split('\n');
    lines.pop();
    for (const line of lines) {
      const e = parseSegmentListLine(line);
      if (e) names.push(join(dir, e.filename));
    }
  }
  return names;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the agent through an outage and a full disk', () => {
  it('a clip recorded while the cloud is unreachable is uploaded once the network returns: every segment exactly once, byte-identical, and the device never knocks in a hot loop', async () => {
    const serial = 'SIMOUTAGE001';
    const r = await startAgent(serial);
    let stopped = false;
    try {
      await waitFor(() => r.uploaded.length >= 2, 30_000, 'two uploads before the outage');

      // the outage: refused for 7 s, then a blackhole for 6 s
      const before = proxy.connections;
      const t0 = performance.now();
      const queuedBefore = r.queued.length;
      proxy.setMode('refuse');
      await sleep(7000);
      proxy.setMode('blackhole');
      await sleep(6000);
      const outageMs = performance.now() - t0;
      const during = proxy.connections - before;
      proxy.setMode('forward');
      const recordedDuring = r.queued.slice(queuedBefore);

      // bounded, and the device did keep trying
      const bound = outageConnectionBound(outageMs);
      expect(during, `connections during a ${Math.round(outageMs)} ms outage (bound ${bound})`).toBeLessThanOrEqual(bound);
      expect(during).toBeGreaterThan(0);
      expect(recordedDuring.length).toBeGreaterThanOrEqual(4);

      // the backlog drains
      const mustArrive = r.queued.map((q) => q.clipId);
      await waitFor(() => mustArrive.every((id) => r.uploaded.some((u) => u.clipId === id)), 40_000, 'the backlog to drain');
      await r.agent.stop();
      stopped = true;
    } finally {
      if (!stopped) await r.agent.stop();
    }

    const all = rows(r.config.dataDir);
    // nothing failed or lost; only the clips closed on the way out may still wait
    expect(all.filter((c) => c.state !== 'uploaded' && c.state !== 'queued')).toEqual([]);
    expect(all.filter((c) => c.state === 'queued').length).toBeLessThanOrEqual(2);
    // every segment ffmpeg closed was journaled
    const journaled = new Set(all.map((c) => c.path));
    for (const path of listedSegments(r.config.dataDir)) expect(journaled.has(path), path).toBe(true);

    const inCloud = await cloudClips(serial);
    const uploadedRows = all.filter((c) => c.state === 'uploaded');
    expect(inCloud.map((c) => c.id as string).sort()).toEqual(uploadedRows.map((c) => c.id).sort());
    // no footage twice under two ids
    expect(new Set(inCloud.map((c) => c.sha256)).size).toBe(inCloud.length);
    for (const c of uploadedRows) {
      const cloudClip = inCloud.find((x) => x.id === c.id);
      expect(cloudClip.sha256).toBe(c.sha256);
      expect(cloudClip.size).toBe(c.size);
      // byte-identical: the object as the subscriber downloads it, and the file on the device
      expect(await cloudSha256(c.id)).toBe(c.sha256);
      expect((await hashFile(c.path)).sha256).toBe(c.sha256);
    }
  }, 120_000);

  it('with a small quota, recording carries on, uploaded clips go first, and footage lost while the cloud is unreachable is continuous before events, counted and shown by agent status', async () => {
    const serial = FULL_DISK_SERIAL;
    const maxBytes = 250_000;
    const r = await startAgent(serial, { storage: { maxBytes, minFreeBytes: 0 } });
    let stopped = false;
    let st: DeviceStatus;
    let cli: { json: DeviceStatus; text: string };
    const eventIds: string[] = [];
    try {
      // phase 1, online: the quota is kept by deleting clips the cloud has
      await waitFor(() => r.evicted.length >= 3 && r.uploaded.length >= 6, 40_000, 'uploaded clips evicted');
      expect(r.evicted.every((e) => e.lostClips === 0)).toBe(true);
      const evictedUploaded = rows(r.config.dataDir).filter((c) => c.state === 'uploaded' && !existsSync(c.path));
      expect(evictedUploaded.length).toBeGreaterThanOrEqual(3);

      // phase 2, offline: nothing uploads, the quota fills with footage the cloud does not have
      proxy.setMode('refuse');
      const queuedAtCut = r.queued.length;
      await sleep(3000);
      // one motion: one or two event clips, well within the quota
      camera.triggerMotion();
      await waitFor(() => r.queued.slice(queuedAtCut).some((q) => q.kind === 'event'), 15_000, 'an event clip');
      await waitFor(() => r.evicted.reduce((n, e) => n + e.lostClips, 0) >= 4, 60_000, 'footage lost to the quota');
      // recording never stopped
      const recorded = r.queued.length - queuedAtCut;
      expect(recorded).toBeGreaterThanOrEqual(6);
      expect(r.agent.recorderPid).toBeDefined();
      for (const q of r.queued.slice(queuedAtCut)) if (q.kind === 'event') eventIds.push(q.clipId);
      expect(eventIds.length).toBeGreaterThanOrEqual(1);

      st = await readDeviceStatus(r.config);
      // `npm run agent -- status`, as another process, while the agent runs
      const cfgFile = join(root, `${serial}.json`);
      writeFileSync(
        cfgFile,
        JSON.stringify({ serial, cloudUrl: proxy.url, input: camera.streamUrl, dataDir: r.config.dataDir, segmentSeconds: 2, development: true, storage: { maxBytes, minFreeBytes: 0 } }),
      );
      const run = promisify(execFile);
      const tsx = join(process.cwd(), 'node_modules', '.bin', 'tsx');
      const [json, text] = await Promise.all([
        run(tsx, ['agent/main.ts', 'status', '--config', cfgFile, '--json'], { env: { ...process.env, FFMPEG_PATH: r.config.ffmpegPath } }),
        run(tsx, ['agent/main.ts', 'status', '--config', cfgFile], { env: { ...process.env, FFMPEG_PATH: r.config.ffmpegPath } }),
      ]);
      cli = { json: JSON.parse(json.stdout) as DeviceStatus, text: text.stdout };

      // phase 3, online again: what is left uploads, events first
      const uploadedAtReturn = r.uploaded.length;
      proxy.setMode('forward');
      const survivingEvents = eventIds.filter((id) => row(r.config.dataDir, id)?.state !== 'lost');
      await waitFor(() => survivingEvents.every((id) => r.uploaded.some((u) => u.clipId === id)), 30_000, 'the events to upload');
      const afterReturn = r.uploaded.slice(uploadedAtReturn).map((u) => u.clipId);
      // the events come before the continuous backlog (beside the uploads already in flight when the network returned)
      for (const id of survivingEvents) expect(afterReturn.indexOf(id)).toBeLessThan(survivingEvents.length + CONCURRENCY);
      await r.agent.stop();
      stopped = true;
    } finally {
      if (!stopped) await r.agent.stop();
    }

    const all = rows(r.config.dataDir);
    const lost = all.filter((c) => c.state === 'lost');
    expect(lost.length).toBeGreaterThanOrEqual(4);
    // continuous before events: no event clip was lost while continuous footage waited
    expect(lost.every((c) => c.kind === 'continuous' && c.lastErrorCode === 'EVICTED')).toBe(true);
    for (const c of lost) expect(existsSync(c.path)).toBe(false);
    // uploaded clips were evicted with their state kept
    expect(all.some((c) => c.state === 'uploaded' && !existsSync(c.path))).toBe(true);

    // agent status, in process and from the CLI
    for (const s of [st!, cli!.json]) {
      expect(s.lost.clips).toBeGreaterThanOrEqual(4);
      expect(s.lost.bytes).toBeGreaterThan(0);
      expect(s.queue.depth).toBeGreaterThan(0);
      expect(s.queue.bytesAtRisk).toBeGreaterThan(0);
      expect(s.queue.oldestAgeMs).toBeGreaterThan(0);
      expect(s.lastUpload?.clipId).toBeTruthy();
      expect(s.lastError?.code).toBe('NETWORK_ERROR');
      expect(s.disk?.maxBytes).toBe(maxBytes);
      // the quota holds, give or take the segment that just closed
      expect(s.disk?.segmentsBytes).toBeLessThanOrEqual(maxBytes + 100_000);
      expect(s.evicted.clips).toBeGreaterThanOrEqual(s.lost.clips + 3);
    }
    expect(cli!.text).toMatch(/footage lost: +\d+ clips/);
    expect(cli!.text).toMatch(/last error: +NETWORK_ERROR/);
    expect(cli!.text).toMatch(/queue: +\d+ clips? waiting/);
  }, 180_000);
});
