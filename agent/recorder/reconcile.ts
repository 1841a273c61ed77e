import { existsSync } from 'node:fs';
import { open, readdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Logger } from '../../shared/log.js';
import type { Journal } from '../journal/journal.js';
import { Mp4FormatError } from './mp4-boxes.js';
import { fsyncPath } from '../../shared/fsync.js';
import { salvageSegment } from './salvage.js';
import { inspectSegment, truncateSegment } from './segment-check.js';
import { parseListName, parseSegmentName, runIdLaunchMs } from './segment-clock.js';
import { parseSegmentListLine, type SegmentListEntry } from './segment-list.js';

/**
 * Start-up reconciliation of the segments folder against the journal
 * (DESIGN: "the folder, not the list, is the source of truth at start-up").
 * Runs before the recorder starts, with no ffmpeg writing the folder.
 *
 * - A segment a list names (ffmpeg closed it) without a journal row: a power
 *   cut came between "listed" and "journaled". fsync, check, journal.
 * - A segment no list names: ffmpeg was killed, or the power cut, while it was
 *   written. salvage.ts keeps its complete fragments: 'intact' or 'truncated'
 *   is journaled; 'empty' or 'unreadable' (nothing playable) is counted
 *   (dropped_segments) and deleted.
 * - A journal row the cloud does not have whose file is gone: marked lost
 *   and counted (lost_clips), and reported.
 * - Anything else in the folder (*.tmp, a stray file) is removed, and so are
 *   lists whose segments are all journaled or gone: they have told what they
 *   knew.
 *
 * Every journal write is durable (synchronous=FULL) before the file is acted
 * on: a drop is counted before the file goes, a clip is journaled before the
 * uploader sees it.
 */

export interface FoundSegment {
  path: string;
  startMs: number;
  durationMs: number;
  /** the sample entry type of each track */
  tracks: string[];
  hasVideo: boolean;
  closedBy: 'list' | 'salvage';
}

export interface ReconcileOptions {
  dir: string;
  journal: Journal;
  logger: Logger;
  /** hashes and journals a segment as a queued clip: the agent's own path for new segments */
  journalSegment: (segment: FoundSegment) => Promise<void>;
}

export interface ReconcileReport {
  /** closed (listed) segments journaled now */
  listed: number;
  /** partial segments whose complete fragments were kept and journaled */
  salvaged: number;
  /** bytes cut from partial segments (an incomplete fragment, zeros, garbage) or after a stream change */
  cutBytes: number;
  /** partial segments with nothing playable, deleted */
  dropped: number;
  /** journal rows whose file was gone, marked lost */
  lost: number;
  /** files that were neither a segment nor a list, removed */
  removed: number;
  /** lists no longer needed, removed */
  lists: number;
  /** segments journaled that hold no video track */
  withoutVideo: number;
}

export async function reconcileSegments(o: ReconcileOptions): Promise<ReconcileReport> {
  const report: ReconcileReport = { listed: 0, salvaged: 0, cutBytes: 0, dropped: 0, lost: 0, removed: 0, lists: 0, withoutVideo: 0 };
  const log = o.logger;
  let names: string[] = [];
  try {
    names = (await readdir(o.dir, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const segments: string[] = [];
  const lists: string[] = [];
  for (const name of names) {
    if (parseSegmentName(name)) segments.push(name);
    else if (parseListName(name)) lists.push(name);
    else {
      await unlink(join(o.dir, name)).catch(() => undefined);
      report.removed += 1;
      log.info({ file: name }, 'removed a file that is no segment (a temporary file?)');
    }
  }

  const listed = new Map<string, SegmentListEntry>();
  const listedBy = new Map<string, string[]>();
  for (const list of lists) {
    const entries = await readListLines(join(o.dir, list));
    listedBy.set(
      list,
      entries.map((e) => basename(e.filename)),
    );
    for (const e of entries) listed.set(basename(e.filename), e);
  }

  for (const name of segments.sort()) {
    const path = join(o.dir, name);
    if (o.journal.getClipByPath(path)) continue;
    try {
      const entry = listed.get(name);
      const found = entry ? await closedSegment(o, path, entry, report) : await partialSegment(o, path, report);
      if (!found) continue;
      if (!found.hasVideo) {
        report.withoutVideo += 1;
        log.error({ segment: name, tracks: found.tracks }, 'a segment holds no video track');
      }
      await o.journalSegment(found);
      if (found.closedBy === 'list') report.listed += 1;
      else report.salvaged += 1;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      log.error({ segment: name, err }, 'could not reconcile a segment; it stays for the next start');
    }
  }

  // rows first collected, then written: the journal cannot be written while a query iterates
  const gone: { id: string; path: string }[] = [];
  for (const c of o.journal.clipsExpectingFile()) if (!existsSync(c.path)) gone.push({ id: c.id, path: c.path });
  for (const c of gone) {
    o.journal.markClipLost(c.id, 'FILE_MISSING');
    report.lost += 1;
  }
  if (gone.length > 0) {
    log.error({ clips: gone.length, first: basename(gone[0]?.path ?? '') }, 'clips not yet uploaded have lost their files: marked lost');
  }

  for (const [list, segs] of listedBy) {
    const done = segs.every((n) => {
      const p = join(o.dir, n);
      return o.journal.getClipByPath(p) !== undefined || !existsSync(p);
    });
    if (done) {
      await unlink(join(o.dir, list)).catch(() => undefined);
      report.lists += 1;
    }
  }
  if (report.removed + report.lists + report.dropped > 0) await fsyncPath(o.dir).catch(() => undefined);

  const { listed: l, salvaged, dropped, lost, removed } = report;
  if (l + salvaged + dropped + lost + removed > 0) log.info({ ...report }, 'start-up reconciliation of segments and journal');
  return report;
}

/** A segment ffmpeg listed as closed: fsynced, checked, and timed from its mtime. */
async function closedSegment(o: ReconcileOptions, path: string, entry: SegmentListEntry, report: ReconcileReport): Promise<FoundSegment | undefined> {
  await fsyncPath(path);
  // the mtime is when ffmpeg closed the file: the segment's end (read before any cut moves it)
  const { mtimeMs, size } = await stat(path);
  const listedMs = Math.max(0, Math.round((entry.endSec - entry.startSec) * 1000));
  const checked = await check(o, path, size, report);
  if (!checked) return undefined;
  const durationMs = checked.cut ? checked.durationMs : listedMs;
  return {
    path,
    // Start: its end (mtime) minus the length the list gives. The run's
    // launch time (in its id) plus the list's start offset would be early by
    // the connect, probe and first-keyframe wait of that run; mtime is late
    // only by ffmpeg's write. It cannot start before its run was launched.
    startMs: Math.max(launchOf(path), Math.round(mtimeMs) - listedMs),
    durationMs,
    tracks: checked.tracks,
    hasVideo: checked.hasVideo,
    closedBy: 'list',
  };
}

/** A segment no list names: salvaged, or counted and deleted. */
async function partialSegment(o: ReconcileOptions, path: string, report: ReconcileReport): Promise<FoundSegment | undefined> {
  const { mtimeMs } = await stat(path);
  const result = await salvageSegment(path);
  if (result.status === 'empty' || result.status === 'unreadable') {
    await dropSegment(o, path, `${result.status}: ${result.reason ?? ''}`, report);
    return undefined;
  }
  report.cutBytes += result.originalBytes - result.keptBytes;
  o.logger.info(
    { segment: basename(path), status: result.status, fragments: result.fragmentsKept, cutBytes: result.originalBytes - result.keptBytes },
    'salvaged a partial segment',
  );
  const checked = await check(o, path, result.keptBytes, report);
  if (!checked) return undefined;
  return {
    path,
    // Start: the last write (mtime) ended the fragments kept, give or take
    // the one that was cut, so mtime minus their media time (trun sample
    // durations, not an estimate from the fragment count). Not the birth
    // time: the first segment of a run is created only after probing, and
    // the card's file system may not keep it.
    startMs: Math.max(launchOf(path), Math.round(mtimeMs) - checked.durationMs),
    durationMs: checked.durationMs,
    tracks: checked.tracks,
    hasVideo: checked.hasVideo,
    closedBy: 'salvage',
  };
}

/** Reads the segment's fragments: a stream change cuts it (as at run time), an unreadable file is dropped. */
async function check(
  o: ReconcileOptions,
  path: string,
  size: number,
  report: ReconcileReport,
): Promise<{ durationMs: number; tracks: string[]; hasVideo: boolean; cut: boolean } | undefined> {
  let state;
  try {
    state = await inspectSegment(path);
  } catch (err) {
    if (!(err instanceof Mp4FormatError)) throw err;
    await dropSegment(o, path, err.message, report);
    return undefined;
  }
  let cut = false;
  if (state.change) {
    if (state.fragments === 0) {
      await dropSegment(o, path, `nothing before a stream change: ${state.change.reason}`, report);
      return undefined;
    }
    o.logger.warn({ segment: basename(path), reason: state.change.reason }, "the camera's stream changed mid-segment: cutting the segment before the change");
    report.cutBytes += size - state.change.at;
    await truncateSegment(path, state.change.at);
    o.journal.addStats({ stream_changes: 1 });
    cut = true;
  }
  const tracks = (state.tracks ?? []).map((t) => t.codec);
  return { durationMs: state.durationMs, tracks, hasVideo: state.video !== undefined, cut };
}

/** Counted durably first, deleted after. */
async function dropSegment(o: ReconcileOptions, path: string, reason: string, report: ReconcileReport): Promise<void> {
  o.journal.addStats({ dropped_segments: 1 });
  await unlink(path).catch(() => undefined);
  report.dropped += 1;
  o.logger.warn({ segment: basename(path), reason }, 'a partial segment with nothing playable was dropped');
}

function launchOf(path: string): number {
  const seg = parseSegmentName(basename(path));
  return (seg && runIdLaunchMs(seg.runId)) ?? 0;
}

/** The complete lines of a segment list: a line being written when the power went is no closed segment. */
async function readListLines(path: string): Promise<SegmentListEntry[]> {
  let fh: FileHandle | undefined;
  let text: string;
  try {
    fh = await open(path, 'r');
    text = await fh.readFile('utf8');
  } catch {
    return [];
  } finally {
    await fh?.close();
  }
  const lines = text.split('\n');
  lines.pop();
  return lines.map(parseSegmentListLine).filter((e): e is SegmentListEntry => e !== undefined);
}
