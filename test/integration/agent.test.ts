import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, agentStatus, type ClipQueued } from '../../agent/agent.js';
import { Journal } from '../../agent/journal/journal.js';
import { loadAgentConfig, type AgentConfig, type AgentConfigInput } from '../../agent/config.js';
import type { ClipUploaded } from '../../agent/uploader/uploader.js';
import { SimCamera } from '../../firmware-sim/camera.js';
import { CamvaultError } from '../../shared/errors.js';
import { createLogger } from '../../shared/log.js';
import { DeviceApiStub } from '../helpers/device-api-stub.js';
import { decode, pidAlive, waitFor } from '../helpers/media.js';

const SERIAL = 'SIMAGT000001';
const logger = createLogger({ level: 'silent' });
let root: string;
let camera: SimCamera;
let cloud: DeviceApiStub;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'camvault-agent-'));
  cloud = await DeviceApiStub.start();
  camera = await SimCamera.start({ serial: SERIAL, width: 320, height: 180, fps: 10, gopSeconds: 1, motionEverySec: 0, logger });
});

afterAll(async () => {
  await camera?.stop();
  await cloud?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

function config(dataDir: string, over: Partial<AgentConfigInput> = {}): AgentConfig {
  return loadAgentConfig({
    env: {},
    overrides: {
      serial: SERIAL,
      cloudUrl: cloud.url,
      input: camera.streamUrl,
      eventsUrl: camera.eventsUrl,
      dataDir,
      segmentSeconds: 2,
      development: true,
      ...over,
    },
  });
}

function journalRow(dataDir: string, path: string) {
  const j = Journal.open(dataDir, { readonly: true });
  try {
    return j.getClipByPath(path);
  } finally {
    j.close();
  }
}

describe('agent', () => {
  it('refuses to start unclaimed without a bind code, saying so', async () => {
    const err = await Agent.start({ config: config(join(root, 'unclaimed')), logger }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CamvaultError);
    expect((err as CamvaultError).code).toBe('DEVICE_NOT_CLAIMED');
    expect((err as Error).message).toMatch(/bindCode/);
  });

  it('refuses to start when the cloud rejects the bind code', async () => {
    const err = await Agent.start({ config: config(join(root, 'badcode'), { bindCode: 'ZZZZZZZZZZ' }), logger }).catch((e: unknown) => e);
    expect((err as CamvaultError).code).toBe('BIND_CODE_INVALID');
  });

  it('claims once, records, journals and uploads each closed segment, marks motion clips as events, and keeps the token for the next start', async () => {
    const dataDir = join(root, 'main');
    const claimsBefore = cloud.count('claim');
    const agent = await Agent.start({ config: config(dataDir, { bindCode: cloud.bindCode }), logger });
    const queued: ClipQueued[] = [];
    const uploaded: ClipUploaded[] = [];
    agent.on('clip-queued', (e: ClipQueued) => queued.push(e));
    agent.on('clip-uploaded', (e: ClipUploaded) => uploaded.push(e));
    let recorderPid: number | undefined;
    let queuedBeforeStop: number;
    try {
      expect(cloud.count('claim')).toBe(claimsBefore + 1);
      await waitFor(() => uploaded.length >= 2, 25_000, '2 uploaded clips');
      recorderPid = agent.recorderPid;
      for (const u of uploaded.slice(0, 2)) {
        expect(cloud.objects.get(u.clipId)?.equals(readFileSync(u.path))).toBe(true);
        expect((await decode(u.path)).errors).toEqual([]);
      }
      // a motion now lands in the segment being recorded
      const before = queued.length;
      camera.triggerMotion();
      await waitFor(() => queued.slice(before).some((q) => q.kind === 'event'), 15_000, 'an event clip');
      const st = agent.status();
      expect(st.claimed).toBe(true);
      expect(st.counts.uploaded).toBeGreaterThanOrEqual(2);
      // status from another process's point of view, while the agent runs
      expect(agentStatus(dataDir).counts.uploaded).toBe(st.counts.uploaded);
      queuedBeforeStop = queued.length;
    } finally {
      await agent.stop();
    }
    // the segment in progress was closed and journaled on the way out
    expect(queued.length).toBeGreaterThan(queuedBeforeStop);
    expect(recorderPid !== undefined && pidAlive(recorderPid)).toBe(false);
    await agent.stop(); // idempotent
    const st = agentStatus(dataDir);
    expect(st.counts.queued + st.counts.uploaded).toBe(queued.length);
    expect(st.serial).toBe(SERIAL);

    // the token is in the journal: a restart without a bind code does not claim again
    const again = await Agent.start({ config: config(dataDir), logger });
    const more: ClipUploaded[] = [];
    again.on('clip-uploaded', (e: ClipUploaded) => more.push(e));
    try {
      await waitFor(() => more.length >= 1, 25_000, 'an upload after the restart');
    } finally {
      await again.stop();
    }
    expect(cloud.count('claim')).toBe(claimsBefore + 1);
  });

  it('journals at start-up a segment ffmpeg closed but a crash kept out of the journal', async () => {
    const dataDir = join(root, 'main');
    const segDir = join(dataDir, 'segments', 'main');
    const someSegment = readdirSync(segDir).find((n) => n.endsWith('.mp4')) as string;
    // what a power cut between "listed" and "journaled" leaves behind
    copyFileSync(join(segDir, someSegment), join(segDir, '1000000000000-deadbeef_000000.mp4'));
    writeFileSync(join(segDir, '1000000000000-deadbeef.csv'), '1000000000000-deadbeef_000000.mp4,0.000000,2.000000\n');
    const orphan = join(segDir, '1000000000000-deadbeef_000000.mp4');
    expect(journalRow(dataDir, orphan)).toBeUndefined();
    const agent = await Agent.start({ config: config(dataDir), logger });
    await agent.stop();
    const row = journalRow(dataDir, orphan);
    expect(row).toMatchObject({ durationMs: 2000, kind: 'continuous', size: statSync(orphan).size });
    expect(['queued', 'uploading', 'uploaded']).toContain(row?.state);
  });
});
