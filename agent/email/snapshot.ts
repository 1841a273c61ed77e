import { spawn } from 'node:child_process';
import { killOnExit } from '../../shared/ffmpeg.js';

/**
 * The picture in an alert email: one frame of the event clip as a JPEG, made
 * by ffmpeg (`-frames:v 1 -q:v 5`). The frame is taken from the closed clip,
 * not from the segment ffmpeg is still writing: the clip is complete and
 * checked by then, and its motion is in it. A camera cannot spare the CPU to
 * decode much, so -ss goes before -i (ffmpeg seeks to the keyframe before
 * the moment and decodes only from there).
 */

export const SNAPSHOT_MAX_BYTES = 4 * 1024 * 1024;
const SNAPSHOT_TIMEOUT_MS = 20_000;

/** ffmpeg's argv for one JPEG frame of `input` at `offsetMs`, to stdout. Pure. */
export function snapshotArgs(input: string, offsetMs: number): string[] {
  const ss = (Math.max(0, offsetMs) / 1000).toFixed(3);
  return ['-nostdin', '-hide_banner', '-loglevel', 'error', '-ss', ss, '-i', input, '-map', '0:v:0', '-frames:v', '1', '-q:v', '5', '-f', 'image2', '-c:v', 'mjpeg', 'pipe:1'];
}

/** ffmpeg's argv for a generated test picture (`email test` on a device with no clip yet). Pure. */
export function testPictureArgs(): string[] {
  return ['-nostdin', '-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=1', '-frames:v', '1', '-q:v', '5', '-f', 'image2', '-c:v', 'mjpeg', 'pipe:1'];
}

export class SnapshotError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SnapshotError';
  }
}

/** Runs ffmpeg and collects its stdout; stderr's first line becomes the error. Killed on abort or timeout. */
export function runToBuffer(ffmpegPath: string, args: string[], opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(new SnapshotError('aborted'));
      return;
    }
    const child = spawn(ffmpegPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const forget = killOnExit(child);
    const chunks: Buffer[] = [];
    let size = 0;
    let stderr = '';
    let why: string | undefined;
    const kill = (reason: string): void => {
      why ??= reason;
      child.kill('SIGKILL');
    };
    const timer = setTimeout(() => kill(`ffmpeg took longer than ${opts.timeoutMs ?? SNAPSHOT_TIMEOUT_MS} ms`), opts.timeoutMs ?? SNAPSHOT_TIMEOUT_MS);
    const onAbort = (): void => kill('aborted');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.stdout.on('data', (c: Buffer) => {
      size += c.length;
      if (size > SNAPSHOT_MAX_BYTES) kill(`the picture is larger than ${SNAPSHOT_MAX_BYTES} bytes`);
      else chunks.push(c);
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (c: string) => {
      if (stderr.length < 2000) stderr += c;
    });
    child.on('error', (err) => {
      why ??= `ffmpeg could not run: ${(err as NodeJS.ErrnoException).code ?? err.message}`;
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      forget();
      const out = Buffer.concat(chunks);
      if (why) reject(new SnapshotError(why));
      else if (code !== 0) reject(new SnapshotError(`ffmpeg exited ${code}: ${stderr.split('\n')[0]?.trim() || 'no message'}`));
      else if (out.length === 0) reject(new SnapshotError('ffmpeg wrote no picture'));
      else resolve(out);
    });
  });
}

/**
 * One frame of `clipPath` at `offsetMs` into it; the first frame when there
 * is none at that moment (a seek past the last keyframe of a short clip).
 */
export async function grabSnapshot(ffmpegPath: string, clipPath: string, offsetMs: number, opts: { signal?: AbortSignal } = {}): Promise<Buffer> {
  try {
    return await runToBuffer(ffmpegPath, snapshotArgs(clipPath, offsetMs), opts);
  } catch (err) {
    if (offsetMs <= 0 || opts.signal?.aborted) throw err;
    return runToBuffer(ffmpegPath, snapshotArgs(clipPath, 0), opts);
  }
}

export function testPicture(ffmpegPath: string, opts: { signal?: AbortSignal } = {}): Promise<Buffer> {
  return runToBuffer(ffmpegPath, testPictureArgs(), opts);
}
