import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolveFfmpegPath } from '../../shared/ffmpeg.js';

export const ffmpegPath = resolveFfmpegPath();

/** The top-level MP4 boxes of a file, in order, with their sizes. */
export function mp4Boxes(buf: Buffer): { type: string; size: number }[] {
  const boxes: { type: string; size: number }[] = [];
  let off = 0;
  while (off + 8 <= buf.length) {
    let size = buf.readUInt32BE(off);
    const type = buf.subarray(off + 4, off + 8).toString('latin1');
    if (size === 1 && off + 16 <= buf.length) size = Number(buf.readBigUInt64BE(off + 8));
    if (size === 0) size = buf.length - off;
    if (size < 8) break;
    boxes.push({ type, size });
    off += size;
  }
  return boxes;
}

export function mp4BoxTypes(path: string): string[] {
  return mp4Boxes(readFileSync(path)).map((b) => b.type);
}

export interface DecodeResult {
  code: number | null;
  frames: number;
  /** what ffmpeg printed at -v error: empty means a clean decode */
  errors: string[];
}

/** Decodes a file (or stdin data) fully with ffmpeg and counts the frames. */
export function decode(input: string | Buffer, opts: { format?: string } = {}): Promise<DecodeResult> {
  const args = ['-nostdin', '-hide_banner', '-v', 'error', '-stats'];
  if (opts.format) args.push('-f', opts.format);
  args.push('-i', typeof input === 'string' ? input : 'pipe:0', '-f', 'null', '-');
  return new Promise((resolve, reject) => {
    const child = spawn(ffmpegPath, args, {
      stdio: [typeof input === 'string' ? 'ignore' : 'pipe', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code) => {
      const lines = stderr.split(/\r|\n/).map((l) => l.trim()).filter(Boolean);
      const progress = lines.filter((l) => l.startsWith('frame='));
      const last = progress[progress.length - 1] ?? '';
      const frames = Number(/frame=\s*(\d+)/.exec(last)?.[1] ?? 0);
      resolve({ code, frames, errors: lines.filter((l) => !l.startsWith('frame=')) });
    });
    if (typeof input !== 'string') child.stdin?.end(input);
  });
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function waitFor(check: () => boolean, timeoutMs: number, what = 'condition'): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
