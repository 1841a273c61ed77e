/**
 * Corruption against every object store that runs here (issue 4, acceptance
 * "Corruption"): the real Agent records a real SimCamera with real ffmpeg
 * while the network is down; one queued segment is altered on disk after it
 * was hashed and journaled; when the network returns, the STORE refuses its
 * body because the MD5 signed into the URL no longer matches: the local
 * driver with CONTENT_MD5_MISMATCH, Ceph RGW with S3's BadDigest. The agent
 * re-hashes the file, finds it changed, marks the clip failed as corrupt,
 * reports it (log at error, `agent status` last error and failed count) and
 * never sends it again, while the rest of the queue uploads.
 */
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, type ClipQueued } from '../../agent/agent.js';
import { loadAgentConfig, type AgentConfig } from '../../agent/config.js';
import { Journal, type ClipRow } from '../../agent/journal/journal.js';
import { readDeviceStatus } from '../../agent/status.js';
import type { RetryPolicy } from '../../agent/uploader/retry-policy.js';
import type { ClipUploaded, UploadFailed } from '../../agent/uploader/uploader.js';
import { SimCamera } from '../../firmware-sim/camera.js';
import { createLogger } from '../../shared/log.js';
import { createBindCode, registerAndLogin, setPlan, startTestCloud, type TestCloud } from '../helpers/cloud.js';
import { waitFor } from '../helpers/media.js';
import { availableDrivers, type Driver } from '../helpers/s3-env.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

const POLICY: Partial<RetryPolicy> = { minDelayMs: 200, maxDelayMs: 1000, factor: 2, jitter: 0.2, maxRetries: 3, parkMs: 2000 };
/** what each store answers to a body whose MD5 is not the signed one */
const REFUSAL: Record<Driver, string> = { local: 'CONTENT_MD5_MISMATCH', s3: 'BadDigest' };

const logger = createLogger({ level: 'silent' });

/** One byte changes, the size does not: what a bad sector or a stray write does. */
function flipByte(path: string, at: number): void {
  const fd = openSync(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    b[0] = (b[0] as number) ^ 0xff;
    writeSync(fd, b, 0, 1, at);
  } finally {
    closeSync(fd);
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each(availableDrivers)('a segment altered on disk after it was hashed, on the %s store', (driver) => {
  const serial = driver === 's3' ? 'SIMCORRUPTS3' : 'SIMCORRUPTLO';
  let root: string;
  let camera: SimCamera;
  let cloud: TestCloud;
  /** between the agent and the cloud's API, so the test can take the network down */
  let proxy: TcpProxy;
  let direct: string;
  let token: string;
  let accountId: string;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), `camvault-corrupt-${driver}-`));
    proxy = await TcpProxy.start();
    cloud = await startTestCloud({ publicUrl: proxy.url, objects: driver });
    const port = (cloud.app.server.address() as AddressInfo).port;
    proxy.target = { host: '127.0.0.1', port };
    direct = `http://127.0.0.1:${port}`;
    ({ token, accountId } = await registerAndLogin(direct));
    await setPlan(direct, token, 'premium');
    camera = await SimCamera.start({ serial, width: 320, height: 180, fps: 10, gopSeconds: 1, motionEverySec: 0, logger });
  }, 60_000);

  afterAll(async () => {
    await camera?.stop();
    await cloud?.close();
    await proxy?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('is refused by the store (MD5 mismatch), reported, never sent again, and the rest of the queue uploads', async () => {
    const config: AgentConfig = loadAgentConfig({
      env: {},
      overrides: {
        serial,
        cloudUrl: proxy.url,
        input: camera.streamUrl,
        dataDir: join(root, serial),
        segmentSeconds: 2,
        development: true,
        uploadConcurrency: 2,
        bindCode: await createBindCode(direct, token),
      },
    });
    const logs: { level: number; msg: string; code?: string; clipId?: string }[] = [];
    const log = createLogger({ level: 'info' }, { write: (s: string) => logs.push(JSON.parse(s)) });
    const queued: ClipQueued[] = [];
    const uploaded: ClipUploaded[] = [];
    const failed: UploadFailed[] = [];
    proxy.setMode('forward');
    const agent = await Agent.start({ config, logger: log, retryPolicy: POLICY });
    agent.on('clip-queued', (e: ClipQueued) => queued.push(e));
    agent.on('clip-uploaded', (e: ClipUploaded) => uploaded.push(e));
    agent.on('upload-failed', (e: UploadFailed) => failed.push(e));
    let stopped = false;
    let victim: ClipRow | undefined;
    try {
      // claimed (the claim went through while forwarding); now the network goes down
      await waitFor(() => queued.length >= 1, 30_000, 'a first clip');
      proxy.setMode('refuse');
      const from = queued.length;
      await waitFor(() => queued.length - from >= 3, 30_000, 'clips queued while offline');
      victim = queued
        .slice(from)
        .map((q) => row(config.dataDir, q.clipId) as ClipRow)
        .find((c) => c.state === 'queued');
      expect(victim).toBeDefined();
      const v = victim as ClipRow;
      flipByte(v.path, Math.floor(v.size / 2));
      proxy.setMode('forward');

      await waitFor(() => failed.some((f) => f.clipId === v.id && f.next === 'failed'), 30_000, 'the refusal');
      const others = queued.map((q) => q.clipId).filter((id) => id !== v.id);
      await waitFor(() => others.every((id) => uploaded.some((u) => u.clipId === id)), 30_000, 'the rest of the queue');
      const attempts = row(config.dataDir, v.id)?.attempts;
      // two parks later, still not tried again
      await sleep(2 * ((POLICY.parkMs as number) + 500));
      expect(row(config.dataDir, v.id)).toMatchObject({ state: 'failed', lastErrorCode: REFUSAL[driver], attempts });
      await agent.stop();
      stopped = true;
    } finally {
      if (!stopped) await agent.stop();
    }
    const v = victim as ClipRow;
    // refused by the store itself, once, and recognised as corruption (the
    // other failures of this clip are the outage's NETWORK_ERRORs)
    expect(failed.filter((f) => f.clipId === v.id && f.code !== 'NETWORK_ERROR')).toEqual([{ clipId: v.id, code: REFUSAL[driver], status: 400, next: 'failed', corrupt: true }]);
    const line = logs.find((l) => l.level === 50 && l.clipId === v.id);
    expect(line).toMatchObject({ code: REFUSAL[driver] });
    expect(line?.msg).toMatch(/corrupt/);

    const st = await readDeviceStatus(config);
    expect(st.lastError).toMatchObject({ code: REFUSAL[driver], clipId: v.id });
    expect(st.failed.clips).toBe(1);
    // the cloud does not have it (no clip, no object under its key); it has everything else
    const res = await fetch(`${direct}/v1/clips?serial=${serial}&limit=500`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    const inCloud = ((await res.json()) as { clips: { id: string }[] }).clips.map((c) => c.id);
    expect(inCloud).not.toContain(v.id);
    expect(new Set(inCloud)).toEqual(new Set(uploaded.map((u) => u.clipId)));
    const objects = (await cloud.objects.list(`accounts/${accountId}/devices/${serial}/`)).objects.map((o) => o.key);
    expect(objects.some((k) => k.includes(v.id))).toBe(false);
    expect(objects.length).toBe(inCloud.length);
  }, 120_000);
});
