import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CloudClient } from '../../agent/cloud-client.js';
import { Journal } from '../../agent/journal/journal.js';
import { Uploader, type ClipUploaded } from '../../agent/uploader/uploader.js';
import { hashFile } from '../../shared/hash.js';
import { newClipId } from '../../shared/ids.js';
import { createLogger } from '../../shared/log.js';
import { DeviceApiStub } from '../helpers/device-api-stub.js';
import { waitFor } from '../helpers/media.js';

/**
 * The bandwidth cap on a real socket, in real time. A test, not a benchmark:
 * the cap must hold (never faster than burst + rate × t), and the bounds the
 * other way are loose, because a shared 2-core machine can always be slower.
 */
const SERIAL = 'SIMCAP000001';
let dir: string;
let stub: DeviceApiStub;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'camvault-cap-'));
  stub = await DeviceApiStub.start();
});

afterAll(async () => {
  await stub?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function uploadAll(sub: string, sizes: number[], cap: { bytesPerSec: number; burstBytes?: number }): Promise<{ elapsedMs: number; uploaded: ClipUploaded[] }> {
  const d = join(dir, sub);
  const journal = Journal.open(d);
  for (const size of sizes) {
    const startMs = Date.now() - 60_000;
    const id = newClipId(startMs);
    const path = join(d, `${id}.mp4`);
    writeFileSync(path, randomBytes(size));
    journal.addClip({ id, channel: 'main', path, startMs, durationMs: 10_000, kind: 'continuous', ...(await hashFile(path)) });
  }
  const client = new CloudClient({ baseUrl: stub.url, uploadBytesPerSec: cap.bytesPerSec, uploadBurstBytes: cap.burstBytes });
  client.setDeviceCredentials(SERIAL, stub.deviceToken);
  const uploader = new Uploader({ journal, api: client, serial: SERIAL, logger: createLogger({ level: 'silent' }), concurrency: 2 });
  const uploaded: ClipUploaded[] = [];
  uploader.on('clip-uploaded', (e: ClipUploaded) => uploaded.push(e));
  const t0 = performance.now();
  uploader.start();
  try {
    await waitFor(() => uploaded.length === sizes.length, 30_000, 'the uploads');
  } finally {
    await uploader.stop({ graceMs: 100 });
    journal.close();
  }
  return { elapsedMs: performance.now() - t0, uploaded };
}

describe('upload bandwidth cap', () => {
  it('holds two concurrent uploads together to the cap, and every byte arrives', async () => {
    // 450 kB at 200 kB/s with a 50 kB burst: at least 2 s
    const { elapsedMs, uploaded } = await uploadAll('capped', [225_000, 225_000], { bytesPerSec: 200_000, burstBytes: 50_000 });
    expect(elapsedMs).toBeGreaterThanOrEqual(2000 * 0.95);
    // loose: the cap does not starve the link either (5x slower would be a bug, not a busy machine)
    expect(elapsedMs).toBeLessThan(10_000);
    for (const u of uploaded) expect(stub.objects.get(u.clipId)?.equals(readFileSync(u.path))).toBe(true);
  });

  it('without a cap the same bytes go in a fraction of that time', async () => {
    const { elapsedMs } = await uploadAll('uncapped', [225_000, 225_000], { bytesPerSec: 0 });
    expect(elapsedMs).toBeLessThan(1500);
  });
});
