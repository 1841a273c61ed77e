/**
 * A disk that is really full: a 16 MiB tmpfs holding the journal (SQLite,
 * WAL) and the segments, filled to the last byte. A journal write fails
 * there with SQLITE_FULL; the keeper must turn that into an eviction and a
 * retry, not a crash, and must not lose footage the cloud does not have to
 * do it. (16 MiB, not less: between automatic checkpoints the WAL alone may
 * grow to 1000 pages, about 4 MiB.)
 *
 * Mounting a tmpfs needs root (CAP_SYS_ADMIN); elsewhere the suite says so
 * in one line and is skipped.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Journal, type ClipRow } from '../../agent/journal/journal.js';
import { StorageKeeper } from '../../agent/storage/keeper.js';
import { newClipId } from '../../shared/ids.js';
import { createLogger } from '../../shared/log.js';

let skipReason: string | undefined;

function tryMount(): string | undefined {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) {
    skipReason = 'needs root on Linux to mount a small tmpfs';
    return undefined;
  }
  const dir = mkdtempSync(join(tmpdir(), 'camvault-fulldisk-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', dir], { stdio: 'ignore' });
    return dir;
  } catch {
    rmSync(dir, { recursive: true, force: true });
    skipReason = 'mount -t tmpfs was refused (no CAP_SYS_ADMIN here)';
    return undefined;
  }
}

const mountDir = tryMount();

afterAll(() => {
  if (!mountDir) return;
  try {
    execFileSync('umount', [mountDir], { stdio: 'ignore' });
  } finally {
    rmSync(mountDir, { recursive: true, force: true });
  }
});

const suite = mountDir ? describe : describe.skip;
if (!mountDir) console.log(`disk-full suite skipped: ${skipReason}`);

suite('a journal write on a full disk', () => {
  let journal: Journal;
  let keeper: StorageKeeper;
  let segDir: string;
  const logLines: { level: number; msg: string }[] = [];
  const t0 = Date.now() - 3_600_000;
  let seq = 0;

  beforeAll(() => {
    journal = Journal.open(mountDir as string);
    segDir = join(mountDir as string, 'segments', 'main');
    mkdirSync(segDir, { recursive: true });
    keeper = new StorageKeeper({
      journal,
      dir: segDir,
      // a quota larger than the disk (a misjudged card, a shared file system): the disk runs out first
      storage: { maxBytes: 100 * 1024 * 1024, minFreeBytes: 0 },
      logger: createLogger({ level: 'debug' }, { write: (s: string) => logLines.push(JSON.parse(s)) }),
      intervalMs: 3_600_000,
    });
  });
  afterAll(async () => {
    await keeper?.stop();
    journal?.close();
  });

  /** A journaled clip; its file written first, when it has a size. */
  function add(size: number, state: 'queued' | 'uploaded' = 'queued'): ClipRow {
    seq += 1;
    const startMs = t0 + seq * 2000;
    const id = newClipId(startMs);
    const path = join(segDir, `${id}.mp4`);
    if (size > 0) writeFileSync(path, Buffer.alloc(size, 1));
    const c = journal.addClip({ id, channel: 'main', path, startMs, durationMs: 2000, size, md5: 'x', sha256: 'y', kind: 'continuous' });
    if (state === 'uploaded') {
      journal.markUploading(id);
      journal.markUploaded(id);
    }
    return c;
  }

  /** Clips go on being journaled through withSpace, as the agent journals each closed segment. */
  async function journalMany(n: number): Promise<{ fullSeen: number }> {
    let fullSeen = 0;
    for (let i = 0; i < n; i += 1) {
      await keeper.withSpace('journaling a clip', () => {
        try {
          return add(0);
        } catch (err) {
          if ((err as { code?: string }).code === 'SQLITE_FULL') fullSeen += 1;
          throw err;
        }
      });
    }
    return { fullSeen };
  }

  it('when segments fill the disk, deletes clips the cloud already has, goes through, and loses no footage', async () => {
    const waiting = add(1_000_000);
    // clips the cloud has, 1 MB each, until the disk is full
    const uploaded: ClipRow[] = [];
    for (;;) {
      try {
        uploaded.push(add(1_000_000, 'uploaded'));
      } catch (err) {
        expect(['ENOSPC', 'SQLITE_FULL']).toContain((err as { code?: string }).code);
        break;
      }
    }
    expect(uploaded.length).toBeGreaterThan(5);
    const { fullSeen } = await journalMany(300);
    // the disk did fill, and every write went through anyway
    expect(fullSeen).toBeGreaterThan(0);
    expect(logLines.some((l) => l.level === 40 && /disk is full/.test(l.msg))).toBe(true);
    // room came from clips the cloud has; the one waiting for upload is still there
    expect(uploaded.filter((c) => !existsSync(c.path)).length).toBeGreaterThan(0);
    expect(existsSync(waiting.path)).toBe(true);
    expect(journal.getClip(waiting.id)?.state).toBe('queued');
    expect(journal.stats().lost_clips).toBeUndefined();
  });

  it('when something else fills the disk, tries a bounded number of times, says so, and still deletes no footage the cloud lacks', async () => {
    // the WAL's space back, for the clip below
    journal.checkpoint();
    const waiting = add(200_000);
    const fd = openSync(join(mountDir as string, 'foreign.bin'), 'w');
    try {
      const chunk = Buffer.alloc(64 * 1024, 2);
      for (;;) writeSync(fd, chunk);
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
    } finally {
      closeSync(fd);
    }
    const before = logLines.length;
    // the write fails for good at some point: the error is the caller's (the recorder logs it), nothing crashes
    await expect(journalMany(2000)).rejects.toMatchObject({ code: 'SQLITE_FULL' });
    // each write makes room at most twice; the one that failed for good did so twice
    const tries = logLines.slice(before).filter((l) => /disk is full/.test(l.msg)) as unknown as { attempt: number }[];
    expect(tries.every((t) => t.attempt <= 2)).toBe(true);
    expect(tries.slice(-2).map((t) => t.attempt)).toEqual([1, 2]);
    expect(logLines.slice(before).filter((l) => l.level === 50 && /something other than the segments/.test(l.msg))).toHaveLength(1);
    expect(existsSync(waiting.path)).toBe(true);
    expect(journal.stats().lost_clips).toBeUndefined();
  });
});
