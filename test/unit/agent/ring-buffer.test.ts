import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { diskUsage, evictionOrder, planEviction, type EvictionInput, type RingClip } from '../../../agent/storage/ring-buffer.js';

const MB = 1_000_000;

function clip(id: string, state: RingClip['state'], kind: RingClip['kind'], startMs: number, sizeBytes = 10 * MB): RingClip {
  return { id, state, kind, startMs, sizeBytes };
}

/** Quota 100 MB, reserve 50 MB, plenty of disk unless a case says otherwise. */
function input(clips: RingClip[], over: Partial<EvictionInput> = {}): EvictionInput {
  const used = clips.reduce((n, c) => n + c.sizeBytes, 0);
  return { maxBytes: 100 * MB, minFreeBytes: 50 * MB, freeBytes: 1000 * MB, usedBytes: used, clips, ...over };
}

const ids = (plan: { evict: { id: string }[] }): string[] => plan.evict.map((e) => e.id);

describe('ring buffer eviction plan', () => {
  const cases: { name: string; clips: RingClip[]; over?: Partial<EvictionInput>; evict: string[]; lostBytes?: number; satisfied?: boolean }[] = [
    {
      name: 'deletes nothing while the segments fit the quota and the disk keeps its reserve',
      clips: [clip('a', 'uploaded', 'continuous', 1), clip('b', 'queued', 'event', 2)],
      evict: [],
      lostBytes: 0,
    },
    {
      name: 'deletes uploaded clips first, oldest first, events included, before any footage waiting for upload',
      clips: [
        clip('q-old', 'queued', 'continuous', 1),
        clip('up-event', 'uploaded', 'event', 2),
        clip('up-cont', 'uploaded', 'continuous', 3),
        ...Array.from({ length: 8 }, (_, i) => clip(`q${i}`, 'queued', 'event', 10 + i)),
      ],
      // 110 MB in a 90 MB quota: two clips must go
      over: { maxBytes: 90 * MB },
      evict: ['up-event', 'up-cont'],
      lostBytes: 0,
    },
    {
      name: 'deletes waiting continuous footage before waiting events, oldest first, and counts it as lost',
      clips: [clip('ev-old', 'queued', 'event', 1), clip('c-new', 'queued', 'continuous', 5), clip('c-old', 'failed', 'continuous', 2), clip('ev-new', 'queued', 'event', 6)],
      over: { maxBytes: 15 * MB },
      evict: ['c-old', 'c-new', 'ev-old'],
      lostBytes: 30 * MB,
    },
    {
      name: 'deletes a waiting event before the clip being uploaded, even a continuous one',
      clips: [clip('up', 'uploading', 'continuous', 1), clip('ev', 'queued', 'event', 2), clip('ev2', 'queued', 'event', 3)],
      over: { maxBytes: 25 * MB },
      evict: ['ev'],
      lostBytes: 10 * MB,
    },
    {
      name: 'deletes the clip being uploaded when nothing else is left, continuous before event',
      clips: [clip('up-ev', 'uploading', 'event', 1), clip('up-c', 'uploading', 'continuous', 2), clip('q', 'queued', 'event', 3)],
      over: { maxBytes: 5 * MB },
      evict: ['q', 'up-c', 'up-ev'],
      lostBytes: 30 * MB,
    },
    {
      name: 'frees space for the disk reserve as well as for the quota',
      clips: [clip('u1', 'uploaded', 'continuous', 1), clip('u2', 'uploaded', 'continuous', 2), clip('q', 'queued', 'continuous', 3)],
      over: { freeBytes: 35 * MB },
      evict: ['u1', 'u2'],
      lostBytes: 0,
    },
    {
      name: 'deletes lost clips first without counting their footage again',
      clips: [clip('u', 'uploaded', 'continuous', 1), clip('gone', 'lost', 'event', 9)],
      over: { maxBytes: 15 * MB },
      evict: ['gone'],
      lostBytes: 0,
    },
    {
      name: 'when no eviction can restore the reserve, deletes only what costs no footage and says so',
      clips: [clip('u', 'uploaded', 'continuous', 1), clip('q', 'queued', 'event', 2), clip('c', 'queued', 'continuous', 3)],
      over: { freeBytes: 0 },
      evict: ['u'],
      lostBytes: 0,
      satisfied: false,
    },
    {
      name: 'still enforces the quota when the reserve is out of reach',
      clips: [clip('u', 'uploaded', 'continuous', 1), clip('c', 'queued', 'continuous', 2), clip('e', 'queued', 'event', 3)],
      over: { freeBytes: 0, maxBytes: 12 * MB },
      evict: ['u', 'c'],
      lostBytes: 10 * MB,
      satisfied: false,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const plan = planEviction(input(c.clips, c.over));
      expect(ids(plan)).toEqual(c.evict);
      if (c.lostBytes !== undefined) expect(plan.lostBytes).toBe(c.lostBytes);
      expect(plan.satisfied).toBe(c.satisfied ?? true);
      for (const e of plan.evict) expect(e.lost).toBe(e.state !== 'uploaded' && e.state !== 'lost');
      expect(plan.lostClips).toBe(plan.evict.filter((e) => e.lost).length);
    });
  }

  it('reports the bytes after the plan and what is still missing', () => {
    const plan = planEviction(input([clip('u', 'uploaded', 'continuous', 1, 30 * MB)], { usedBytes: 130 * MB, freeBytes: 10 * MB }));
    expect(plan).toMatchObject({ usedBytesAfter: 100 * MB, freeBytesAfter: 40 * MB, satisfied: false, shortBytes: 10 * MB });
  });

  it('refuses numbers that cannot be right', () => {
    expect(() => planEviction(input([], { freeBytes: -1 }))).toThrow(RangeError);
    expect(() => planEviction(input([], { maxBytes: Number.NaN }))).toThrow(RangeError);
  });

  it('orders by start time then id, whatever the input order', () => {
    const clips = [clip('b', 'uploaded', 'event', 5), clip('a', 'uploaded', 'event', 5), clip('c', 'uploaded', 'continuous', 1)];
    expect(evictionOrder(clips).map((c) => c.id)).toEqual(['c', 'a', 'b']);
  });
});

/** Deterministic random numbers (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('ring buffer eviction plan, on 2,000 random clip sets', () => {
  const STATES: RingClip['state'][] = ['queued', 'uploading', 'uploaded', 'failed', 'lost'];
  const waiting = (c: RingClip): boolean => c.state === 'queued' || c.state === 'failed';
  const unuploaded = (c: RingClip): boolean => c.state !== 'uploaded' && c.state !== 'lost';

  it('meets quota and reserve whenever deleting every clip would, and deletes in the promised order', () => {
    const rand = prng(42);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
    const seen = { evicting: 0, losing: 0, impossible: 0 };
    for (let run = 0; run < 2000; run += 1) {
      const clips = Array.from({ length: Math.floor(rand() * 40) }, (_, i) =>
        clip(`c${i}`, pick(STATES), rand() < 0.3 ? 'event' : 'continuous', Math.floor(rand() * 1000), Math.floor(1 + rand() * 20 * MB)),
      );
      const clipBytes = clips.reduce((n, c) => n + c.sizeBytes, 0);
      const usedBytes = clipBytes + Math.floor(rand() * 30 * MB); // the segment being written, partial files
      const inp: EvictionInput = {
        maxBytes: Math.floor(rand() * 1.2 * usedBytes),
        minFreeBytes: Math.floor(rand() * 150 * MB),
        freeBytes: Math.floor(rand() * 200 * MB),
        usedBytes,
        clips,
      };
      const plan = planEviction(inp);
      const what = `run ${run}`;
      const evicted = new Set(ids(plan));
      expect(evicted.size, what).toBe(plan.evict.length);
      const survivors = clips.filter((c) => !evicted.has(c.id));
      const gone = clips.filter((c) => evicted.has(c.id));
      const freed = gone.reduce((n, c) => n + c.sizeBytes, 0);
      expect(plan.usedBytesAfter, what).toBe(inp.usedBytes - freed);
      expect(plan.freeBytesAfter, what).toBe(inp.freeBytes + freed);

      // within quota and reserve whenever possible
      const possible = inp.usedBytes - clipBytes <= inp.maxBytes && inp.freeBytes + clipBytes >= inp.minFreeBytes;
      if (plan.evict.length > 0) seen.evicting += 1;
      if (plan.lostClips > 0) seen.losing += 1;
      if (!possible) seen.impossible += 1;
      if (possible) {
        expect(plan.satisfied, what).toBe(true);
        expect(plan.usedBytesAfter, what).toBeLessThanOrEqual(inp.maxBytes);
        expect(plan.freeBytesAfter, what).toBeGreaterThanOrEqual(inp.minFreeBytes);
      }
      if (plan.satisfied && plan.evict.length > 0) {
        // no more than needed: without the last eviction the plan would fall short
        const last = plan.evict[plan.evict.length - 1] as { sizeBytes: number };
        const before = { used: plan.usedBytesAfter + last.sizeBytes, free: plan.freeBytesAfter - last.sizeBytes };
        expect(before.used > inp.maxBytes || before.free < inp.minFreeBytes, what).toBe(true);
      }

      // no uploaded clip survives while one that never reached the cloud was evicted
      if (gone.some(unuploaded)) expect(survivors.filter((c) => !unuploaded(c)), what).toEqual([]);
      // no event is evicted while continuous footage waiting for upload survives
      if (gone.some((c) => c.kind === 'event' && unuploaded(c))) expect(survivors.filter((c) => c.kind === 'continuous' && waiting(c)), what).toEqual([]);
      // the clip being uploaded goes only when nothing else that waits is left
      if (gone.some((c) => c.state === 'uploading')) expect(survivors.filter(waiting), what).toEqual([]);
      // oldest first among clips of the same standing
      for (const g of gone) {
        for (const s of survivors) {
          if (s.state === g.state && s.kind === g.kind) expect(g.startMs, what).toBeLessThanOrEqual(s.startMs);
        }
      }
      // every evicted clip that never reached the cloud is counted as lost, with its bytes
      const lost = gone.filter(unuploaded);
      expect(plan.lostClips, what).toBe(lost.length);
      expect(plan.lostBytes, what).toBe(lost.reduce((n, c) => n + c.sizeBytes, 0));
      if (!possible) {
        // deleting footage cannot end the shortage: only what costs none goes, and what the quota needs
        expect(survivors.filter((c) => !unuploaded(c)), what).toEqual([]);
        if (inp.usedBytes - clipBytes > inp.maxBytes) expect(lost, what).toEqual([]);
      }
    }
    // the generator must exercise every outcome
    for (const [outcome, runs] of Object.entries(seen)) expect(runs, outcome).toBeGreaterThan(200);
  });
});

describe('diskUsage', () => {
  it('reads free and total bytes of the file system that holds a folder', async () => {
    const d = await diskUsage(tmpdir());
    expect(d.totalBytes).toBeGreaterThan(0);
    expect(d.freeBytes).toBeGreaterThan(0);
    expect(d.freeBytes).toBeLessThanOrEqual(d.totalBytes);
    await expect(diskUsage('/nonexistent/camvault')).rejects.toThrow(/ENOENT/);
  });
});
