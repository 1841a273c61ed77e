import type { Socket } from 'node:net';

/**
 * The viewers of one simulated camera stream and what each has been sent.
 * A container-specific fan-out (ts-fanout, mkv-fanout) cuts the encoder's
 * output into regions and says where in each region a viewer may start
 * cleanly (a keyframe) and what header a new viewer needs first; this class
 * decides, per viewer, what to write.
 */

/** What the fan-out needs of a viewer's connection (a net.Socket in practice). */
export type ViewerSocket = Pick<Socket, 'write' | 'writableLength' | 'destroy' | 'once' | 'on' | 'resume' | 'remoteAddress' | 'remotePort'>;

interface Viewer {
  socket: ViewerSocket;
  /** false until it has been sent a header and a keyframe, and again after a stall or a freeze */
  started: boolean;
  /** it has had the stream's header (a container that cannot repeat it mid-stream sends it once) */
  hadHeader: boolean;
  /** stopped for being too slow; waits for its buffer to drain */
  slow: boolean;
}

export interface ViewerSetOptions {
  /** a viewer whose socket buffer exceeds this stops receiving until it drains */
  maxBufferedBytes?: number;
  onViewerStall?: (remote: string, bufferedBytes: number) => void;
  /**
   * Send the header again whenever a viewer restarts at a keyframe. Right for
   * MPEG-TS, whose PAT and PMT repeat anyway; wrong for Matroska, whose EBML
   * header may only open a stream.
   */
  repeatHeader: boolean;
}

export class ViewerSet {
  private readonly viewers = new Set<Viewer>();
  private readonly maxBuffered: number;
  private readonly onStall: ViewerSetOptions['onViewerStall'];
  private readonly repeatHeader: boolean;
  private frozen = false;

  constructor(opts: ViewerSetOptions) {
    this.maxBuffered = opts.maxBufferedBytes ?? 4 * 1024 * 1024;
    this.onStall = opts.onViewerStall;
    this.repeatHeader = opts.repeatHeader;
  }

  get size(): number {
    return this.viewers.size;
  }

  get isFrozen(): boolean {
    return this.frozen;
  }

  add(socket: ViewerSocket): void {
    const viewer: Viewer = { socket, started: false, hadHeader: false, slow: false };
    this.viewers.add(viewer);
    socket.once('close', () => this.viewers.delete(viewer));
    socket.on('error', () => socket.destroy());
    // viewers have nothing to say; discard whatever they send
    socket.resume();
  }

  /**
   * Writes a region of whole packets (or elements) to every viewer. `startAt`
   * is the offset of the first clean start point in it, or -1; `header` what a
   * viewer needs before that point.
   */
  deliver(region: Buffer, startAt: number, header: Buffer | undefined): void {
    if (this.frozen) return;
    for (const v of this.viewers) {
      const buffered = v.socket.writableLength;
      if (v.started) {
        if (buffered > this.maxBuffered) {
          // Too slow: stop feeding it rather than let memory grow. It resumes
          // cleanly at a later keyframe once its buffer has drained.
          v.started = false;
          v.slow = true;
          this.onStall?.(`${v.socket.remoteAddress ?? '?'}:${v.socket.remotePort ?? '?'}`, buffered);
          continue;
        }
        v.socket.write(region);
        continue;
      }
      if (startAt < 0 || !header) continue;
      if (v.slow && buffered > this.maxBuffered / 4) continue;
      v.started = true;
      v.slow = false;
      const from = region.subarray(startAt);
      v.socket.write(!v.hadHeader || this.repeatHeader ? Buffer.concat([header, from]) : from);
      v.hadHeader = true;
    }
  }

  /** A frozen camera: nothing is written, connections stay open. */
  freeze(): void {
    this.frozen = true;
  }

  /** Writing resumes, each viewer at the next keyframe. */
  unfreeze(): void {
    if (!this.frozen) return;
    this.frozen = false;
    for (const v of this.viewers) v.started = false;
  }

  closeAll(): void {
    for (const v of this.viewers) v.socket.destroy();
    this.viewers.clear();
  }
}
