import type { ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';

/**
 * The ffmpeg to run: FFMPEG_PATH (a device's own build) wins, else the binary
 * bundled by @ffmpeg-installer. The bundled package throws at load time on a
 * platform it has no binary for, so it is loaded lazily and only when needed.
 */
export function resolveFfmpegPath(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.FFMPEG_PATH;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const require = createRequire(import.meta.url);
  try {
    const installer = require('@ffmpeg-installer/ffmpeg') as { path: string };
    return installer.path;
  } catch (err) {
    throw new Error(`no bundled ffmpeg for this platform; set FFMPEG_PATH (${String(err)})`, { cause: err });
  }
}

/**
 * Children that must not outlive this process. A clean stop kills them itself;
 * this is the last resort when the process exits some other way (an uncaught
 * error, process.exit from elsewhere). 'exit' handlers run synchronously, which
 * is enough for kill(). One listener for the whole process, not one per child.
 */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

export function killOnExit(child: ChildProcess): () => void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const c of liveChildren) {
        if (c.exitCode === null && c.signalCode === null) {
          try {
            c.kill('SIGKILL');
          } catch {
            // already gone
          }
        }
      }
    });
  }
  liveChildren.add(child);
  const forget = (): void => {
    liveChildren.delete(child);
  };
  child.once('exit', forget);
  return forget;
}

/**
 * Hide credentials and query strings of URLs in text that may reach a log line
 * (ffmpeg echoes its input URL in errors: rtsp://user:pass@cam/stream?token=…).
 */
export function redactUrls(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)([^\s/@?#]*@)?([^\s?#]*)(\?[^\s#]*)?/gi, (_m, scheme: string, auth: string | undefined, rest: string, query: string | undefined) =>
    `${scheme}${auth ? '[redacted]@' : ''}${rest}${query ? '?[redacted]' : ''}`,
  );
}

/**
 * Splits a child's stderr into lines and hands them to `onLine`, at most
 * `maxLines` per `windowMs`, so a camera that makes ffmpeg warn on every packet
 * cannot fill the SD card with logs. Suppressed lines are counted and reported
 * once the window turns over.
 */
export function pipeStderrLines(
  stream: NodeJS.ReadableStream,
  onLine: (line: string) => void,
  opts: { maxLines?: number; windowMs?: number; now?: () => number } = {},
): void {
  const maxLines = opts.maxLines ?? 20;
  const windowMs = opts.windowMs ?? 60_000;
  const now = opts.now ?? Date.now;
  let windowStart = now();
  let inWindow = 0;
  let suppressed = 0;
  let pending = '';
  const emit = (line: string): void => {
    const t = now();
    if (t - windowStart >= windowMs) {
      if (suppressed > 0) onLine(`(${suppressed} more ffmpeg lines suppressed)`);
      windowStart = t;
      inWindow = 0;
      suppressed = 0;
    }
    if (inWindow < maxLines) {
      inWindow += 1;
      onLine(line);
    } else {
      suppressed += 1;
    }
  };
  stream.setEncoding?.('utf8');
  stream.on('data', (chunk: string | Buffer) => {
    pending += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    // ffmpeg ends progress lines with \r; treat both as line ends
    const parts = pending.split(/\r\n|\n|\r/);
    pending = parts.pop() ?? '';
    if (pending.length > 4096) pending = pending.slice(-4096);
    for (const p of parts) {
      const line = p.trim();
      if (line) emit(line);
    }
  });
  stream.on('end', () => {
    const line = pending.trim();
    pending = '';
    if (line) emit(line);
  });
}
