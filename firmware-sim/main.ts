import { parseArgs } from 'node:util';
import { SERIAL_RE } from '../shared/ids.js';
import { createLogger } from '../shared/log.js';
import { SimCamera, type SimAudio, type SimVideoCodec } from './camera.js';

/**
 * npm run sim -- --serial SIM00000001 [--width 640 --height 360 --fps 15 --motion-every 20] [--codec h265 --audio pcm_alaw]
 *
 * --cameras N starts N full cameras with consecutive serials; lightweight fleets
 * (no encoder per device) and fault injection come with their own options later.
 */
const USAGE = 'usage: npm run sim -- --serial SIM00000001 [--cameras N] [--width W] [--height H] [--fps F] [--gop SECONDS] [--motion-every SECONDS] [--codec h264|h265] [--audio none|aac|pcm_alaw|pcm_mulaw] [--port P] [--events-port P]';

const CODECS: readonly SimVideoCodec[] = ['h264', 'h265'];
const AUDIOS: readonly SimAudio[] = ['none', 'aac', 'pcm_alaw', 'pcm_mulaw'];

function choice<T extends string>(name: string, value: string | undefined, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(value)) {
    console.error(`sim: --${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
    process.exit(1);
  }
  return value as T;
}

function intOption(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    console.error(`sim: --${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
    process.exit(1);
  }
  return n;
}

/** SIM00000001 + 2 → SIM00000003, keeping the width of the trailing number. */
function nthSerial(base: string, n: number): string {
  if (n === 0) return base;
  const m = /^(.*?)(\d+)$/.exec(base);
  if (!m) return `${base}${n}`;
  const digits = m[2] ?? '';
  return `${m[1] ?? ''}${String(Number(digits) + n).padStart(digits.length, '0')}`;
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        serial: { type: 'string', default: 'SIM00000001' },
        cameras: { type: 'string' },
        width: { type: 'string' },
        height: { type: 'string' },
        fps: { type: 'string' },
        gop: { type: 'string' },
        'motion-every': { type: 'string' },
        codec: { type: 'string' },
        audio: { type: 'string' },
        port: { type: 'string' },
        'events-port': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    console.error(`sim: ${(err as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const serial = values.serial ?? 'SIM00000001';
  if (!SERIAL_RE.test(serial)) {
    console.error(`sim: --serial must be 8-32 characters A-Z 0-9, got ${JSON.stringify(serial)}`);
    process.exit(1);
  }
  const cameras = intOption('cameras', values.cameras, 1, 1, 16);
  const width = intOption('width', values.width, 640, 16, 3840);
  const height = intOption('height', values.height, 360, 16, 2160);
  const fps = intOption('fps', values.fps, 15, 1, 60);
  const gopSeconds = intOption('gop', values.gop, 2, 1, 20);
  const motionEverySec = intOption('motion-every', values['motion-every'], 20, 0, 86_400);
  const videoCodec = choice('codec', values.codec, CODECS, 'h264');
  const audio = choice('audio', values.audio, AUDIOS, 'none');
  const port = intOption('port', values.port, 0, 0, 65_535);
  const eventsPort = intOption('events-port', values['events-port'], 0, 0, 65_535);
  if (cameras > 1 && (port !== 0 || eventsPort !== 0)) {
    console.error('sim: --port and --events-port work with one camera only');
    process.exit(1);
  }

  const logger = createLogger({ name: 'firmware-sim' });
  const running: SimCamera[] = [];
  let stopping = false;
  const stopAll = async (code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await Promise.allSettled(running.map((c) => c.stop()));
    process.exit(code);
  };
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));

  for (let i = 0; i < cameras; i += 1) {
    const s = nthSerial(serial, i);
    if (!SERIAL_RE.test(s)) {
      console.error(`sim: serial ${s} derived for camera ${i + 1} is not valid`);
      await stopAll(1);
      return;
    }
    try {
      const cam = await SimCamera.start({ serial: s, width, height, fps, gopSeconds, motionEverySec, videoCodec, audio, logger, port, eventsPort });
      running.push(cam);
      cam.on('motion', (e: { at: string }) => logger.info({ serial: s, at: e.at }, 'motion'));
      console.log(`${s} stream ${cam.streamUrl} events ${cam.eventsUrl}`);
    } catch (err) {
      console.error(`sim: ${(err as Error).message}`);
      await stopAll(1);
      return;
    }
    if (stopping) return;
  }
  console.log('Ctrl-C stops');
}

void main();
