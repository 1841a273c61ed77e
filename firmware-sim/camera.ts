import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { systemClock, type Clock } from '../shared/clock.js';
import { killOnExit, pipeStderrLines, resolveFfmpegPath } from '../shared/ffmpeg.js';
import { isSerial } from '../shared/ids.js';
import { createLogger, type Logger } from '../shared/log.js';
import { MkvFanout } from './mkv-fanout.js';
import { TsFanout } from './ts-fanout.js';

/** What real cameras send: H.264 or H.265 video. */
export type SimVideoCodec = 'h264' | 'h265';
/** Audio as real cameras send it: none, AAC, or G.711 (A-law, µ-law). */
export type SimAudio = 'none' | 'aac' | 'pcm_alaw' | 'pcm_mulaw';
export type SimContainer = 'mpegts' | 'matroska';

export interface SimCameraOptions {
  serial: string;
  width?: number;
  height?: number;
  fps?: number;
  /** keyframe interval */
  gopSeconds?: number;
  /** a motion event every N seconds; 0 = never (triggerMotion() still works) */
  motionEverySec?: number;
  ffmpegPath?: string;
  /** video bitrate; the default scales with the picture size */
  bitrateKbps?: number;
  /** default h264 */
  videoCodec?: SimVideoCodec;
  /** default none; G.711 is always 8 kHz mono and is served in Matroska (see simContainer) */
  audio?: SimAudio;
  /** AAC sample rate, 16000 to 48000 (default 16000) */
  audioSampleRate?: number;
  logger?: Logger;
  host?: '127.0.0.1';
  /** 0 (the default) picks a free port */
  port?: number;
  eventsPort?: number;
  /** font for the serial and clock overlay; the default probes common paths */
  fontFile?: string | null;
  clock?: Clock;
  /** how long start() waits for the first keyframe */
  startTimeoutMs?: number;
}

/** What reconfigure() may change; what is left out stays as it is. */
export interface SimStreamChange {
  width?: number;
  height?: number;
  videoCodec?: SimVideoCodec;
}

export interface MotionEvent {
  serial: string;
  /** ISO 8601 */
  at: string;
}

const FONT_CANDIDATES = [
  '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf',
  '/usr/share/fonts/dejavu/DejaVuSans.ttf',
  '/usr/share/fonts/TTF/DejaVuSans.ttf',
  '/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf',
  '/usr/share/fonts/truetype/freefont/FreeSans.ttf',
  '/System/Library/Fonts/Supplemental/Arial.ttf',
  '/Library/Fonts/Arial.ttf',
];

export function findFont(): string | undefined {
  return FONT_CANDIDATES.find((p) => existsSync(p));
}

/**
 * The container the stream is served in. MPEG-TS, as most encoders' network
 * outputs, unless the audio is G.711: ffmpeg writes pcm_alaw and pcm_mulaw
 * into MPEG-TS as an opaque data stream (stream_type 0x06, no descriptor)
 * that no demuxer reads back as audio, so those go out in Matroska. Real
 * cameras send G.711 over RTSP/RTP; for the recorder, which only sees what
 * ffmpeg demuxes, the codecs are what matters.
 */
export function simContainer(audio: SimAudio): SimContainer {
  return audio === 'pcm_alaw' || audio === 'pcm_mulaw' ? 'matroska' : 'mpegts';
}

export interface CameraArgsOptions {
  serial: string;
  width: number;
  height: number;
  fps: number;
  gopSeconds: number;
  fontFile?: string;
  /** default: about what a real camera spends, 0.1 bit per pixel per frame, at least 200 kb/s */
  bitrateKbps?: number;
  videoCodec?: SimVideoCodec;
  audio?: SimAudio;
  audioSampleRate?: number;
}

/** The encoder's argv (without the ffmpeg path). Pure. */
export function buildCameraArgs(o: CameraArgsOptions): string[] {
  const kbps = Math.round(o.bitrateKbps ?? Math.max(200, (o.width * o.height * o.fps * 0.1) / 1000));
  const gop = Math.max(1, Math.round(o.fps * o.gopSeconds));
  const audio = o.audio ?? 'none';
  const g711 = audio === 'pcm_alaw' || audio === 'pcm_mulaw';
  const sampleRate = g711 ? 8000 : (o.audioSampleRate ?? 16000);
  if (g711 && o.audioSampleRate !== undefined && o.audioSampleRate !== 8000) throw new RangeError('G.711 audio is 8000 Hz');
  if (!g711 && (!Number.isInteger(sampleRate) || sampleRate < 16000 || sampleRate > 48000)) throw new RangeError('audioSampleRate must be 16000 to 48000');

  const args = ['-nostdin', '-hide_banner', '-loglevel', 'warning', '-re', '-f', 'lavfi', '-i', `testsrc2=size=${o.width}x${o.height}:rate=${o.fps}`];
  if (audio !== 'none') args.push('-re', '-f', 'lavfi', '-i', `sine=frequency=440:beep_factor=4:sample_rate=${sampleRate}`);
  args.push('-map', '0:v');
  if (audio !== 'none') args.push('-map', '1:a');
  if (o.fontFile) {
    // The serial is [A-Z0-9] only and the font path is checked for characters
    // the filter syntax treats specially, so neither needs escaping.
    const size = Math.max(12, Math.round(o.height / 18));
    args.push('-vf', `drawtext=fontfile=${o.fontFile}:text='${o.serial} %{localtime}':x=8:y=8:fontsize=${size}:fontcolor=white:box=1:boxcolor=black@0.6`);
  }
  if (o.videoCodec === 'h265') {
    // Closed GOPs with an IDR every gop frames, VPS/SPS/PPS before each (a
    // viewer joining mid-stream needs them), and x265's banner silenced.
    const params = `keyint=${gop}:min-keyint=${gop}:scenecut=0:open-gop=0:repeat-headers=1:log-level=error`;
    args.push('-c:v', 'libx265', '-preset', 'ultrafast', '-tune', 'zerolatency', '-x265-params', params);
  } else {
    args.push('-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', String(gop));
  }
  args.push(
    // cameras stream at a capped bitrate; testsrc2 would otherwise take ~5 Mb/s at 720p
    '-b:v',
    `${kbps}k`,
    '-maxrate',
    `${kbps}k`,
    '-bufsize',
    `${kbps * 2}k`,
    '-pix_fmt',
    'yuv420p',
  );
  if (audio === 'aac') args.push('-c:a', 'aac', '-b:a', '32k', '-ac', '1');
  else if (g711) args.push('-c:a', audio, '-ar', '8000', '-ac', '1');
  // a live source: hand each packet to the pipe at once, not in 32 KiB batches
  args.push('-flush_packets', '1');
  if (simContainer(audio) === 'matroska') {
    // On a pipe ffmpeg cuts Clusters at 32 KiB or 1 s, so keyframes fall
    // mid-Cluster and a joining viewer could wait many seconds for a Cluster
    // that opens on one. With limits above a GOP, each Cluster is one GOP.
    args.push('-f', 'matroska', '-live', '1', '-cluster_size_limit', '4000000', '-cluster_time_limit', '5000', 'pipe:1');
  } else {
    args.push('-f', 'mpegts', 'pipe:1');
  }
  return args;
}

/**
 * A camera without hardware: one ffmpeg encodes a moving test picture with the
 * serial and the time burnt in, served as MPEG-TS over TCP to any number of
 * viewers, plus a TCP feed of motion events as NDJSON.
 *
 * Emits 'motion' (MotionEvent).
 */
export class SimCamera extends EventEmitter {
  readonly serial: string;
  streamUrl = '';
  eventsUrl = '';
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly ffmpegPath: string;
  /** what the encoder is asked for; reconfigure() changes the picture and the codec */
  private encoderOptions: CameraArgsOptions;
  private readonly fanout: TsFanout | MkvFanout;
  private readonly streamServer: Server;
  private readonly eventsServer: Server;
  private readonly eventClients = new Set<Socket>();
  private encoder: ChildProcess | undefined;
  private encoderFailures = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private motionTimer: NodeJS.Timeout | undefined;
  private stopping: Promise<void> | undefined;
  private readonly motionEverySec: number;
  private readonly startTimeoutMs: number;

  private constructor(opts: SimCameraOptions) {
    super();
    if (!isSerial(opts.serial)) throw new Error(`invalid serial ${JSON.stringify(opts.serial)}: 8-32 characters A-Z 0-9`);
    this.serial = opts.serial;
    this.log = (opts.logger ?? createLogger({ name: 'firmware-sim', level: process.env.CAMVAULT_LOG_LEVEL ?? 'warn' })).child({ serial: opts.serial });
    this.clock = opts.clock ?? systemClock;
    this.ffmpegPath = opts.ffmpegPath ?? resolveFfmpegPath();
    const width = opts.width ?? 640;
    const height = opts.height ?? 360;
    const fps = opts.fps ?? 15;
    for (const [name, v] of [['width', width], ['height', height], ['fps', fps]] as const) checkDimension(name, v);
    this.startTimeoutMs = opts.startTimeoutMs ?? 15_000;
    let fontFile: string | undefined = opts.fontFile === null ? undefined : (opts.fontFile ?? findFont());
    if (fontFile && /[':\\,;[\]=]/.test(fontFile)) fontFile = undefined;
    const audio = opts.audio ?? 'none';
    this.encoderOptions = {
      serial: this.serial,
      width,
      height,
      fps,
      gopSeconds: opts.gopSeconds ?? 2,
      fontFile,
      bitrateKbps: opts.bitrateKbps,
      videoCodec: opts.videoCodec,
      audio,
      audioSampleRate: opts.audioSampleRate,
    };
    // checked here so a bad option fails the constructor, not the first spawn
    buildCameraArgs(this.encoderOptions);
    this.motionEverySec = opts.motionEverySec ?? 20;
    const fanoutOpts = {
      onViewerStall: (remote: string, bytes: number) => this.log.warn({ remote, bytes }, 'a slow viewer stopped receiving until it catches up'),
    };
    this.fanout = simContainer(audio) === 'matroska' ? new MkvFanout(fanoutOpts) : new TsFanout(fanoutOpts);
    this.streamServer = createServer((socket) => {
      socket.setNoDelay(true);
      this.fanout.add(socket);
    });
    this.eventsServer = createServer((socket) => {
      this.eventClients.add(socket);
      socket.once('close', () => this.eventClients.delete(socket));
      socket.on('error', () => socket.destroy());
      socket.resume();
    });
  }

  /** Resolves once the stream is live (the first keyframe went out). */
  static async start(opts: SimCameraOptions): Promise<SimCamera> {
    const cam = new SimCamera(opts);
    const host = opts.host ?? '127.0.0.1';
    try {
      const [sp, ep] = await Promise.all([listen(cam.streamServer, host, opts.port ?? 0), listen(cam.eventsServer, host, opts.eventsPort ?? 0)]);
      cam.streamUrl = `tcp://${host}:${sp}`;
      cam.eventsUrl = `tcp://${host}:${ep}`;
      await cam.startEncoder(cam.startTimeoutMs);
    } catch (err) {
      await cam.stop();
      throw err;
    }
    if (cam.motionEverySec > 0) {
      cam.motionTimer = setInterval(() => cam.triggerMotion(), cam.motionEverySec * 1000);
    }
    cam.log.info({ streamUrl: cam.streamUrl, eventsUrl: cam.eventsUrl }, 'sim camera started');
    return cam;
  }

  /** The encoder's pid, for tests and fault injection. */
  get encoderPid(): number | undefined {
    return this.encoder?.pid;
  }

  get viewerCount(): number {
    return this.fanout.viewerCount;
  }

  get eventsClientCount(): number {
    return this.eventClients.size;
  }

  /**
   * A frozen camera: viewers stay connected but get no more data, as when a
   * camera's pipeline hangs with its sockets open. The encoder keeps running,
   * so after resume() timestamps jump by the time frozen, as they would.
   */
  stall(): void {
    this.fanout.freeze();
    this.log.info('sim camera stalled');
  }

  /** Data flows again, to each viewer from the next keyframe. */
  resume(): void {
    this.fanout.unfreeze();
    this.log.info('sim camera resumed');
  }

  get stalled(): boolean {
    return this.fanout.isFrozen;
  }

  /** The picture size and video codec the encoder is sending now. */
  get streamSettings(): { width: number; height: number; videoCodec: SimVideoCodec } {
    const o = this.encoderOptions;
    return { width: o.width, height: o.height, videoCodec: o.videoCodec ?? 'h264' };
  }

  /**
   * The owner changes the stream settings: the encoder restarts with another
   * picture size or video codec. Over MPEG-TS the viewers stay connected and
   * the new stream follows the old one in-band (PAT and PMT again, a
   * keyframe with new parameter sets, timestamps starting over), the hard
   * case for a recorder that copies the stream into MP4. With
   * disconnectViewers, or over Matroska, whose header may only open a stream,
   * viewers are disconnected instead, as cameras that restart their pipeline
   * do. Resolves at the new stream's first keyframe.
   */
  async reconfigure(change: SimStreamChange, opts: { disconnectViewers?: boolean } = {}): Promise<void> {
    if (this.stopping) throw new Error('the sim camera is stopped');
    const next: CameraArgsOptions = { ...this.encoderOptions };
    if (change.width !== undefined) next.width = checkDimension('width', change.width);
    if (change.height !== undefined) next.height = checkDimension('height', change.height);
    if (change.videoCodec !== undefined) next.videoCodec = change.videoCodec;
    buildCameraArgs(next);
    this.encoderOptions = next;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    const old = this.encoder;
    // from here the old encoder's end handler and output are ignored
    this.encoder = undefined;
    if (old && old.exitCode === null && old.signalCode === null) {
      const exited = new Promise<void>((resolve) => old.once('exit', () => resolve()));
      old.kill('SIGKILL');
      await exited;
    }
    if (opts.disconnectViewers || this.fanout instanceof MkvFanout) this.fanout.reset();
    this.log.info({ ...this.streamSettings, inBand: !(opts.disconnectViewers || this.fanout instanceof MkvFanout) }, 'sim camera stream reconfigured');
    await this.startEncoder(this.startTimeoutMs);
  }

  triggerMotion(at: Date = new Date(this.clock.now())): MotionEvent {
    const event: MotionEvent = { serial: this.serial, at: at.toISOString() };
    const line = `${JSON.stringify({ type: 'motion', ...event })}\n`;
    for (const s of this.eventClients) {
      if (s.writableLength > 1024 * 1024) s.destroy();
      else s.write(line);
    }
    this.emit('motion', event);
    return event;
  }

  /** Idempotent: kills the encoder, closes both servers and every connection. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    if (this.motionTimer) clearInterval(this.motionTimer);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const enc = this.encoder;
    if (enc && enc.exitCode === null && enc.signalCode === null) {
      const exited = new Promise<void>((resolve) => enc.once('exit', () => resolve()));
      enc.kill('SIGTERM');
      const timer = setTimeout(() => enc.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    this.fanout.closeAll();
    for (const s of this.eventClients) s.destroy();
    await Promise.all([closeServer(this.streamServer), closeServer(this.eventsServer)]);
  }

  private startEncoder(readyTimeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        reject(new Error(`sim camera ${this.serial}: no keyframe from ffmpeg within ${readyTimeoutMs} ms`));
      }, readyTimeoutMs);
      this.spawnEncoder({
        onKeyframe: () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve();
        },
        onFirstExit: (why) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          reject(new Error(`sim camera ${this.serial}: ffmpeg ${why}`));
        },
      });
    });
  }

  private spawnEncoder(first?: { onKeyframe: () => void; onFirstExit: (why: string) => void }): void {
    this.restartTimer = undefined;
    if (this.stopping) return;
    const child = spawn(this.ffmpegPath, buildCameraArgs(this.encoderOptions), { stdio: ['ignore', 'pipe', 'pipe'] });
    killOnExit(child);
    this.encoder = child;
    const startedAt = this.clock.now();
    let keyframes = 0;
    child.stdout?.on('data', (chunk: Buffer) => {
      // what a replaced encoder still had in the pipe is dropped, as a camera drops it
      if (this.encoder !== child) return;
      let k: number;
      try {
        k = this.fanout.push(chunk);
      } catch (err) {
        // a stream the fan-out cannot follow: start over with a new encoder
        this.log.error({ err }, 'sim encoder output unreadable; restarting it');
        child.kill('SIGKILL');
        return;
      }
      if (k > 0 && keyframes === 0) first?.onKeyframe();
      keyframes += k;
    });
    if (child.stderr) pipeStderrLines(child.stderr, (line) => this.log.warn({ ffmpeg: line }, 'sim encoder'));
    let ended = false;
    const onEnd = (why: string): void => {
      if (ended) return;
      ended = true;
      // replaced by reconfigure(): the new encoder is already on its way
      if (this.encoder !== child) return;
      if (this.stopping) return;
      first?.onFirstExit(why);
      // viewers must reconnect: the new encoder's timestamps start over
      this.fanout.reset();
      if (keyframes > 0 || this.clock.now() - startedAt > 30_000) this.encoderFailures = 0;
      const delay = Math.min(10_000, 500 * 2 ** this.encoderFailures);
      this.encoderFailures += 1;
      this.log.warn({ why, restartInMs: delay }, 'sim encoder exited; restarting');
      this.restartTimer = setTimeout(() => this.spawnEncoder(), delay);
    };
    child.once('error', (err) => onEnd(`could not start: ${err.message}`));
    child.once('exit', (code, signal) => onEnd(`exited (code ${code}, signal ${signal})`));
  }
}

function checkDimension(name: string, v: number): number {
  if (!Number.isInteger(v) || v <= 0 || v > 8192) throw new Error(`invalid ${name}: ${v}`);
  return v;
}

function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
  });
}
