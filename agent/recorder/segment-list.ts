import { open } from 'node:fs/promises';

/** One line of ffmpeg's csv segment list: `filename,start,end` (seconds). */
export interface SegmentListEntry {
  filename: string;
  startSec: number;
  endSec: number;
}

/** Parses one csv list line; undefined for a line that is not a valid entry. */
export function parseSegmentListLine(line: string): SegmentListEntry | undefined {
  const trimmed = line.trim();
  if (!trimmed) return undefined;
  // the filename is first and may (in theory) be quoted; the two times are last
  const m = /^(.*),(-?[0-9.eE+-]+),(-?[0-9.eE+-]+)$/.exec(trimmed);
  if (!m) return undefined;
  let filename = m[1] ?? '';
  if (filename.startsWith('"') && filename.endsWith('"')) filename = filename.slice(1, -1).replace(/""/g, '"');
  const startSec = Number(m[2]);
  const endSec = Number(m[3]);
  if (!filename || !Number.isFinite(startSec) || !Number.isFinite(endSec)) return undefined;
  return { filename, startSec, endSec };
}

/**
 * Reads a segment list incrementally. ffmpeg's csv list (without
 * -segment_list_size) is appended to and flushed as each segment closes, so
 * only complete lines beyond the last read offset are new. A missing file
 * means ffmpeg has not opened it yet.
 */
export class SegmentListReader {
  private offset = 0;
  private partial = '';

  constructor(readonly path: string) {}

  async readNew(): Promise<SegmentListEntry[]> {
    let fh;
    try {
      fh = await open(this.path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const chunks: Buffer[] = [];
    try {
      const { size } = await fh.stat();
      if (size < this.offset) {
        // truncated: only happens if something rewrote the list; start over
        this.offset = 0;
        this.partial = '';
      }
      while (this.offset < size) {
        const buf = Buffer.alloc(Math.min(64 * 1024, size - this.offset));
        const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset);
        if (bytesRead === 0) break;
        chunks.push(buf.subarray(0, bytesRead));
        this.offset += bytesRead;
      }
    } finally {
      await fh.close();
    }
    if (chunks.length === 0) return [];
    const text = this.partial + Buffer.concat(chunks).toString('utf8');
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    const entries: SegmentListEntry[] = [];
    for (const line of lines) {
      const e = parseSegmentListLine(line);
      if (e) entries.push(e);
    }
    return entries;
  }
}
