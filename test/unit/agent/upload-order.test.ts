import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Journal } from '../../../agent/journal/journal.js';
import { uploadOrder, type QueuedClip } from '../../../agent/uploader/upload-order.js';
import { ManualClock } from '../../../shared/clock.js';
import { newClipId } from '../../../shared/ids.js';

const T0 = Date.parse('2026-03-01T12:00:00Z');
const c = (id: string, kind: QueuedClip['kind'], startMs: number): QueuedClip => ({ id, kind, startMs });
const ids = (clips: QueuedClip[]): string[] => clips.map((x) => x.id);

describe('upload order', () => {
  it('puts event clips before continuous footage, whatever their age', () => {
    expect(ids(uploadOrder([c('cont-old', 'continuous', 1), c('ev-new', 'event', 100)]))).toEqual(['ev-new', 'cont-old']);
  });

  it('after an outage, sends the freshest event first', () => {
    const backlog = [c('ev-1h', 'event', T0 - 3_600_000), c('ev-now', 'event', T0), c('ev-10m', 'event', T0 - 600_000)];
    expect(ids(uploadOrder(backlog))).toEqual(['ev-now', 'ev-10m', 'ev-1h']);
  });

  it('sends continuous footage oldest first, the clips next in line for eviction', () => {
    const backlog = [c('c-2', 'continuous', 2000), c('c-0', 'continuous', 0), c('c-1', 'continuous', 1000)];
    expect(ids(uploadOrder(backlog))).toEqual(['c-0', 'c-1', 'c-2']);
  });

  it('breaks ties on the clip id, in the direction of its kind, so the order is total', () => {
    const same = [c('b', 'event', 5), c('a', 'event', 5), c('y', 'continuous', 5), c('x', 'continuous', 5)];
    expect(ids(uploadOrder(same))).toEqual(['b', 'a', 'x', 'y']);
  });

  it('leaves its input alone', () => {
    const input = [c('c', 'continuous', 1), c('e', 'event', 2)];
    uploadOrder(input);
    expect(ids(input)).toEqual(['c', 'e']);
  });
});

describe('the journal queue follows the upload order', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'camvault-order-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('hands out the same clips in the same order as uploadOrder, retry delays and exclusions applied', () => {
    const clock = new ManualClock(T0);
    const j = Journal.open(dir, { clock });
    // a seeded generator: the same backlog on every run
    let seed = 7;
    const rand = (): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const all: (QueuedClip & { due: boolean })[] = [];
    for (let i = 0; i < 200; i += 1) {
      const kind = rand() < 0.3 ? 'event' : 'continuous';
      // coarse starts, so that ties happen
      const startMs = T0 - Math.floor(rand() * 50) * 10_000;
      const id = newClipId(startMs);
      j.addClip({ id, channel: 'main', path: join(dir, `${id}.mp4`), startMs, durationMs: 10_000, size: 1, md5: 'x', sha256: 'y', kind });
      const r = rand();
      let due = true;
      if (r < 0.1) {
        j.markUploading(id);
        j.markQueued(id, { code: 'HTTP_503', notBeforeMs: T0 + 60_000 });
        due = false;
      } else if (r < 0.2) {
        j.markUploading(id);
        j.markUploaded(id);
        due = false;
      }
      all.push({ id, kind, startMs, due });
    }
    const expected = ids(uploadOrder(all.filter((x) => x.due)));
    expect(j.nextToUpload(1000).map((r) => r.id)).toEqual(expected);
    expect(j.nextToUpload(5).map((r) => r.id)).toEqual(expected.slice(0, 5));
    const exclude = [expected[0] as string, expected[3] as string];
    expect(j.nextToUpload(4, exclude).map((r) => r.id)).toEqual(expected.filter((id) => !exclude.includes(id)).slice(0, 4));
    // once the retry delay is over, those clips take their place in the order
    clock.advance(60_000);
    expect(j.nextToUpload(1000).map((r) => r.id)).toEqual(ids(uploadOrder(all.filter((x) => x.due || j.getClip(x.id)?.state === 'queued'))));
    j.close();
  });
});
