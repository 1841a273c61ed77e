/**
 * The walking skeleton, end to end, with the real parts: a firmware-sim camera
 * streaming H.264 over MPEG-TS/TCP, the agent recording with real ffmpeg and
 * uploading through presigned URLs, and the cloud on port 0 with SQLite. The
 * same body runs once per object-store driver available here: the local store
 * always, and the s3 driver on a real S3 (Ceph RGW in CI) when CAMVAULT_S3_*
 * are set.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { hashFile } from '../../shared/hash.js';
import { SimCamera } from '../../firmware-sim/camera.js';
import { Agent } from '../../agent/agent.js';
import { loadAgentConfig } from '../../agent/config.js';
import { createLogger } from '../../shared/log.js';
import { signUp, startTestCloud, type TestCloud } from '../helpers/cloud.js';
import { availableDrivers, s3Configured, S3_SKIP_REASON } from '../helpers/s3-env.js';

const SERIAL = 'SIME2E000001';
const logger = createLogger({ level: 'silent' });

interface Uploaded {
  clipId: string;
  path: string;
  sha256: string;
  size: number;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- response bodies are checked field by field
async function json(res: Response): Promise<any> {
  const text = await res.text();
  return text ? JSON.parse(text) : undefined;
}

if (!s3Configured) {
  describe.skip(`camera to cloud to subscriber on the s3 driver (RGW run skipped: ${S3_SKIP_REASON})`, () => {
    it('needs a real S3', () => {});
  });
}

describe.each(availableDrivers)('camera to cloud to subscriber (%s object store)', (driver) => {
  let cloud: TestCloud;
  let camera: SimCamera;
  let agent: Agent;
  let dir: string;
  let token: string;
  let strangerToken: string;
  const uploaded: Uploaded[] = [];

  const call = (method: string, path: string, auth?: string, body?: unknown) =>
    fetch(cloud.url + path, {
      method,
      headers: {
        ...(auth ? { authorization: `Bearer ${auth}` } : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  async function signup(email: string): Promise<string> {
    const password = 'correct horse battery staple';
    // registration, then the code the cloud mailed to its development outbox
    await signUp(cloud.url, email, password);
    const s = await json(await call('POST', '/v1/sessions', undefined, { email, password }));
    expect(typeof s.token).toBe('string');
    return s.token as string;
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'camvault-e2e-'));
    cloud = await startTestCloud({ objects: driver });
    token = await signup('owner@example.com');
    strangerToken = await signup('stranger@example.com');
    expect((await call('PUT', '/v1/account/plan', token, { plan: 'basic' })).status).toBe(200);
    const bind = await json(await call('POST', '/v1/devices/bind-codes', token, {}));

    camera = await SimCamera.start({ serial: SERIAL, width: 320, height: 180, fps: 10, gopSeconds: 1, motionEverySec: 0, logger });
    const config = loadAgentConfig({
      env: {},
      overrides: {
        serial: SERIAL,
        cloudUrl: cloud.url,
        input: camera.streamUrl,
        dataDir: join(dir, 'agent'),
        segmentSeconds: 2,
        bindCode: bind.code,
        development: true,
      },
    });
    agent = await Agent.start({ config, logger });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${uploaded.length} clips uploaded in time`)), 50_000);
      agent.on('clip-uploaded', (e: Uploaded) => {
        uploaded.push(e);
        if (uploaded.length >= 3) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }, 90_000);

  afterAll(async () => {
    await agent?.stop();
    await camera?.stop();
    await cloud?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('lists at least 3 uploaded clips for the account', async () => {
    const res = await call('GET', `/v1/clips?serial=${SERIAL}`, token);
    expect(res.status).toBe(200);
    const body = await json(res);
    const ids = body.clips.map((c: { id: string }) => c.id);
    expect(ids.length).toBeGreaterThanOrEqual(3);
    for (const u of uploaded.slice(0, 3)) expect(ids).toContain(u.clipId);
  });

  it('each clip downloaded through its view URL has the SHA-256 of the file on the device', async () => {
    for (const u of uploaded.slice(0, 3)) {
      const onDevice = await hashFile(u.path);
      expect(onDevice.sha256).toBe(u.sha256);
      const view = await json(await call('GET', `/v1/clips/${u.clipId}/view`, token));
      const res = await fetch(view.url);
      expect(res.status).toBe(200);
      const bytes = Buffer.from(await res.arrayBuffer());
      expect(bytes.length).toBe(onDevice.size);
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(onDevice.sha256);
      // a recorded segment is a fragmented MP4: ftyp first
      expect(bytes.subarray(4, 8).toString('latin1')).toBe('ftyp');
    }
  });

  it('another account cannot list, get, view, download or delete these clips', async () => {
    const list = await json(await call('GET', `/v1/clips?serial=${SERIAL}`, strangerToken));
    expect(list.clips).toEqual([]);
    const id = uploaded[0]!.clipId;
    for (const [method, path] of [
      ['GET', `/v1/clips/${id}`],
      ['GET', `/v1/clips/${id}/view`],
      ['GET', `/v1/clips/${id}/download`],
      ['DELETE', `/v1/clips/${id}`],
    ] as const) {
      const res = await call(method, path, strangerToken);
      expect([403, 404]).toContain(res.status);
      await res.arrayBuffer();
    }
    const del = await call('POST', '/v1/clips/delete', strangerToken, { ids: [id] });
    const delBody = await json(del);
    expect(del.ok ? delBody.deleted : 0).toBe(0);
    // and the clip is still there for its owner
    expect((await call('GET', `/v1/clips/${id}`, token)).status).toBe(200);
  });

  it('once a clip is deleted, its view URL fails and it is gone from the list', async () => {
    const id = uploaded[1]!.clipId;
    const view = await json(await call('GET', `/v1/clips/${id}/view`, token));
    const before = await fetch(view.url);
    expect(before.status).toBe(200);
    await before.arrayBuffer();
    expect((await call('DELETE', `/v1/clips/${id}`, token)).status).toBe(204);
    const after = await fetch(view.url);
    expect(after.status).toBeGreaterThanOrEqual(400);
    expect(after.status).toBeLessThan(500);
    await after.arrayBuffer();
    expect((await call('GET', `/v1/clips/${id}`, token)).status).toBe(404);
    const list = await json(await call('GET', `/v1/clips?serial=${SERIAL}`, token));
    expect(list.clips.map((c: { id: string }) => c.id)).not.toContain(id);
  });
});
