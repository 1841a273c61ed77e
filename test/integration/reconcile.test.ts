import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, agentStatus } from '../../agent/agent.js';
import { loadAgentConfig } from '../../agent/config.js';
import { Journal, type ClipRow } from '../../agent/journal/journal.js';
import { buildRecorderArgs, newRunId } from '../../agent/recorder/ffmpeg-args.js';
import { Recorder, type SegmentClosed } from '../../agent/recorder/recorder.js';
import type { ClipUploaded } from '../../agent/uploader/uploader.js';
import { SimCamera } from '../../firmware-sim/camera.js';
import { newClipId } from '../../shared/ids.js';
import { createLogger } from '../../shared/log.js';
import { api, createBindCode, registerAndLogin, setPlan, startTestCloud, type TestAccount, type TestCloud } from '../helpers/cloud.js';
import { decode, ffmpegPath, mp4Boxes, pidAlive, waitFor } from '../helpers/media.js';

/**
 * Start-up reconciliation against a real cloud: a segments folder as a power
 * cut leaves it (a segment ffmpeg listed but the agent never journaled, one
 * cut short mid-fragment with zeros after, one with nothing but its header, a
 * stale temporary file) and a journal row whose file is gone. After
 * Agent.start the two with footage are uploaded byte for byte, the empty one
 * and the .tmp are gone, and the counts say what happened.
 */

const SERIAL = 'SIMRCN000001';
const logger = createLogger({ level: 'silent' });
let root: string;
let camera: SimCamera;
let cloud: TestCloud;
let owner: TestAccount;
/** two segments the real recorder closed, to seed the folder with */
const sources: SegmentClosed[] = [];

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'camvault-reconcile-'));
  cloud = await startTestCloud();
  owner = await registerAndLogin(cloud.url);
  await setPlan(cloud.url, owner.token, 'basic');
  camera = await SimCamera.start({ serial: SERIAL, width: 320, height: 180, fps: 10, gopSeconds: 1, motionEverySec: 0, logger, fontFile: null });
  const rec = new Recorder({ ffmpegPath, input: camera.streamUrl, dir: join(root, 'source'), segmentSeconds: 2, logger, pollMs: 100 });
  rec.on('segment', (s: SegmentClosed) => sources.push(s));
  rec.start();
  try {
    await waitFor(() => sources.length >= 2, 20_000, 'two segments to seed with');
  } finally {
    await rec.stop();
  }
});

afterAll(async () => {
  await camera?.stop();
  await cloud?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Offsets of each moof and the end of the mdat after it. */
function fragments(buf: Buffer): { start: number; end: number }[] {
  const out: { start: number; end: number }[] = [];
  let off = 0;
  for (const b of mp4Boxes(buf)) {
    if (b.type === 'moof') out.push({ start: off, end: 0 });
    if (b.type === 'mdat' && out.length > 0) (out[out.length - 1] as { end: number }).end = off + b.size;
    off += b.size;
  }
  return out;
}

describe('start-up reconciliation', () => {
  it('uploads the listed and the salvaged segments, drops the empty one, removes the .tmp, and marks the clip without a file lost', async () => {
    const dataDir = join(root, 'agent');
    const segDir = join(dataDir, 'segments', 'main');
    mkdirSync(segDir, { recursive: true });
    const [a, b] = sources as [SegmentClosed, SegmentClosed];

    // (a) listed by ffmpeg, not journaled: a power cut between the two
    const listed = join(segDir, '1700000000000-aaaaaaaa_000000.mp4');
    copyFileSync(a.path, listed);
    writeFileSync(join(segDir, '1700000000000-aaaaaaaa.csv'), '1700000000000-aaaaaaaa_000000.mp4,0.000000,2.000000\n1700000000000-aaaaaaaa_000001.mp4,2.0000');

    // (b) never listed, cut in the middle of its last fragment, zeros after: a power cut mid-segment
    const original = readFileSync(b.path);
    const frags = fragments(original);
    expect(frags.length).toBeGreaterThanOrEqual(2);
    const last = frags[frags.length - 1] as { start: number; end: number };
    const kept = frags[frags.length - 2] as { start: number; end: number };
    const partial = join(segDir, '1700000000000-bbbbbbbb_000003.mp4');
    writeFileSync(partial, Buffer.concat([original.subarray(0, Math.floor((last.start + last.end) / 2)), Buffer.alloc(4096)]));

    // (b) never listed, nothing but ftyp and moov: nothing playable
    const empty = join(segDir, '1700000000000-cccccccc_000000.mp4');
    writeFileSync(empty, original.subarray(0, (frags[0] as { start: number }).start));

    // (d) a stale temporary file
    const tmp = join(segDir, '1700000000000-aaaaaaaa_000001.mp4.tmp');
    writeFileSync(tmp, 'half a segment');

    // (c) a queued clip whose file is gone
    const goneId = newClipId(Date.now() - 60_000);
    const journal = Journal.open(dataDir);
    journal.addClip({
      id: goneId,
      channel: 'main',
      path: join(segDir, '1700000000000-dddddddd_000000.mp4'),
      startMs: Date.now() - 60_000,
      durationMs: 2000,
      size: 1234,
      md5: '1B2M2Y8AsgTpgAmY7PhCfg==',
      sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      kind: 'continuous',
    });
    journal.close();

    const config = loadAgentConfig({
      env: {},
      overrides: {
        serial: SERIAL,
        cloudUrl: cloud.url,
        input: camera.streamUrl,
        dataDir,
        segmentSeconds: 2,
        development: true,
        bindCode: await createBindCode(cloud.url, owner.token),
      },
    });
    const startedAt = Date.now();
    const agent = await Agent.start({ config, logger });
    const uploaded: ClipUploaded[] = [];
    agent.on('clip-uploaded', (e: ClipUploaded) => uploaded.push(e));
    let rows: ClipRow[];
    try {
      expect(agent.startupReport).toMatchObject({ listed: 1, salvaged: 1, dropped: 1, lost: 1, removed: 1, lists: 1, withoutVideo: 0 });
      // cut: the half of the last fragment and the zeros
      expect(agent.startupReport?.cutBytes).toBe(Math.floor((last.start + last.end) / 2) + 4096 - kept.end);
      await waitFor(() => [listed, partial].every((p) => uploaded.some((u) => u.path === p)), 30_000, 'the two reconciled clips uploaded');
      const st = agent.status();
      expect(st.recording.droppedSegments).toBe(1);
      expect(st.counts.lost).toBe(1);
      const j = Journal.open(dataDir, { readonly: true });
      try {
        rows = [listed, partial].map((p) => j.getClipByPath(p) as ClipRow);
        expect(j.getClip(goneId)).toMatchObject({ state: 'lost', lastErrorCode: 'FILE_MISSING' });
        expect(j.stats().lost_clips?.n).toBe(1);
      } finally {
        j.close();
      }
    } finally {
      await agent.stop();
    }

    // the folder: no empty segment, no .tmp, no list left; both files in place
    expect(existsSync(empty)).toBe(false);
    expect(existsSync(tmp)).toBe(false);
    expect(readdirSync(segDir).filter((n) => n.startsWith('1700000000000-'))).toEqual(['1700000000000-aaaaaaaa_000000.mp4', '1700000000000-bbbbbbbb_000003.mp4']);

    // the partial kept every complete fragment, byte for byte, and plays cleanly
    const salvaged = readFileSync(partial);
    expect(salvaged.equals(original.subarray(0, kept.end))).toBe(true);
    expect((await decode(partial)).errors).toEqual([]);

    const [listedRow, partialRow] = rows as [ClipRow, ClipRow];
    expect(listedRow).toMatchObject({ durationMs: 2000, kind: 'continuous', size: readFileSync(listed).length });
    // its duration is the media time of the fragments kept (trun sample durations): 10 fps, one frame short of each second
    expect(partialRow.durationMs).toBeGreaterThan(0);
    expect(partialRow.durationMs).toBeLessThan(b.durationMs);
    expect(partialRow.durationMs % 100).toBe(0);
    // start times from the files' mtimes (now), not from the 2023 run ids
    for (const r of rows) {
      expect(r.startMs).toBeGreaterThan(startedAt - 60_000);
      expect(r.startMs + r.durationMs).toBeLessThanOrEqual(Date.now());
    }

    // the cloud holds both, byte for byte
    const clips = await api(cloud.url, 'GET', `/v1/clips?serial=${SERIAL}&limit=100`, { token: owner.token });
    expect(clips.status).toBe(200);
    for (const r of rows) {
      expect((clips.body.clips as { id: string }[]).map((c) => c.id)).toContain(r.id);
      const view = await api(cloud.url, 'GET', `/v1/clips/${r.id}/view`, { token: owner.token });
      const body = Buffer.from(await (await fetch(view.body.url as string)).arrayBuffer());
      expect(sha256(body)).toBe(sha256(readFileSync(r.path)));
      expect(sha256(body)).toBe(r.sha256);
    }
  });

  it('stops an ffmpeg an earlier agent process left writing the folder before it reconciles, and keeps what it wrote', async () => {
    const dataDir = join(root, 'orphan');
    const segDir = join(dataDir, 'segments', 'main');
    mkdirSync(segDir, { recursive: true });
    // what an agent killed by the OOM killer leaves behind: its recorder's ffmpeg, still writing
    const runId = newRunId(Date.now());
    const orphan = spawn(ffmpegPath, buildRecorderArgs({ input: camera.streamUrl, segmentSeconds: 2, dir: segDir, runId }), { stdio: 'ignore', detached: true });
    const pid = orphan.pid as number;
    try {
      await waitFor(() => readdirSync(segDir).filter((n) => n.endsWith('.mp4')).length >= 2, 20_000, 'the orphan to write two segments');
      const config = loadAgentConfig({
        env: {},
        overrides: { serial: SERIAL, cloudUrl: cloud.url, input: camera.streamUrl, dataDir, segmentSeconds: 2, development: true, bindCode: await createBindCode(cloud.url, owner.token) },
      });
      const agent = await Agent.start({ config, logger });
      const report = agent.startupReport;
      try {
        expect(pidAlive(pid)).toBe(false);
        // its closed segments were journaled from its list, the one it had open salvaged (or dropped, if it had no fragment yet)
        expect(report?.listed).toBeGreaterThanOrEqual(1);
        expect((report?.salvaged ?? 0) + (report?.dropped ?? 0)).toBe(1);
        const j = Journal.open(dataDir, { readonly: true });
        try {
          for (const n of readdirSync(segDir).filter((x) => x.startsWith(runId))) {
            if (n.endsWith('.mp4')) expect(j.getClipByPath(join(segDir, n)), n).toBeDefined();
          }
        } finally {
          j.close();
        }
      } finally {
        await agent.stop();
      }
      // a drop is counted in the journal, where `agent status` reads it
      expect(agentStatus(dataDir).recording.droppedSegments).toBe(report?.dropped);
    } finally {
      if (pidAlive(pid)) process.kill(pid, 'SIGKILL');
    }
  });
});

