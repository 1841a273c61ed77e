/**
 * A real Mosquitto 2 with the dynamic security plugin, started by the test
 * (or bench) that needs it: its own folder, config, dynsec file and a free
 * loopback port; stopped and removed by stop(). Debian's mosquitto 2.0.11:
 * /usr/sbin/mosquitto and the plugin in /usr/lib/<arch>/.
 *
 * Run as root, Mosquitto drops to the `mosquitto` user, which could then not
 * write its dynsec file in our temp folder (DESIGN.md, "Broker facts"); the
 * config says `user <whoever we are>`, so it stays the current user and the
 * folder is its own.
 *
 * When the binary or the plugin is missing, a suite that needs it says so
 * in one line and skips.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { dynsecFile } from '../../cloud/mqtt/dynsec.js';

export const MOSQUITTO_BIN = process.env.CAMVAULT_MOSQUITTO_BIN || '/usr/sbin/mosquitto';
const PLUGIN_CANDIDATES = [
  process.env.CAMVAULT_MOSQUITTO_DYNSEC_PLUGIN,
  '/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so',
  '/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so',
  '/usr/lib/mosquitto_dynamic_security.so',
].filter((p): p is string => typeof p === 'string' && p !== '');

export const DYNSEC_PLUGIN = PLUGIN_CANDIDATES.find((p) => existsSync(p));

/** null when Mosquitto can run here, else why not (one line) */
export function mosquittoSkipReason(): string | null {
  if (!existsSync(MOSQUITTO_BIN)) return `Mosquitto not found at ${MOSQUITTO_BIN} (apt-get install mosquitto, or set CAMVAULT_MOSQUITTO_BIN)`;
  if (!DYNSEC_PLUGIN) return 'the Mosquitto dynamic security plugin (mosquitto_dynamic_security.so) was not found; set CAMVAULT_MOSQUITTO_DYNSEC_PLUGIN';
  return null;
}

export interface RunningMosquitto {
  url: string;
  port: number;
  adminUser: string;
  adminPassword: string;
  dir: string;
  /** the broker's log so far (for failure messages) */
  log(): Promise<string>;
  /** idempotent */
  stop(): Promise<void>;
}

export interface StartMosquittoOptions {
  /** devices seeded into the dynsec file before the broker starts */
  devices?: Iterable<{ serial: string; password: string }>;
  /** extra config lines */
  extraConfig?: string[];
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

export async function startMosquitto(opts: StartMosquittoOptions = {}): Promise<RunningMosquitto> {
  const why = mosquittoSkipReason();
  if (why) throw new Error(why);
  const dir = await mkdtemp(join(tmpdir(), 'camvault-mosquitto-'));
  const adminUser = 'camvault-admin';
  const adminPassword = randomBytes(18).toString('base64url');
  const dynsecPath = join(dir, 'dynsec.json');
  await writeFile(dynsecPath, JSON.stringify(dynsecFile({ admin: { username: adminUser, password: adminPassword }, devices: opts.devices })), { mode: 0o600 });
  const logPath = join(dir, 'mosquitto.log');

  // a port taken between our probe and Mosquitto's bind: try another
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const conf = [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous false',
      `plugin ${DYNSEC_PLUGIN}`,
      `plugin_opt_config_file ${dynsecPath}`,
      'persistence false',
      // the cloud's batched $CONTROL messages are up to 192 KiB (cloud/mqtt/mosquitto-broker.ts)
      'max_packet_size 262144',
      'max_queued_messages 1000',
      `log_dest file ${logPath}`,
      'log_type error',
      'log_type warning',
      'log_type notice',
      'connection_messages false',
      `user ${userInfo().username}`,
      ...(opts.extraConfig ?? []),
    ].join('\n');
    const confPath = join(dir, 'mosquitto.conf');
    await writeFile(confPath, `${conf}\n`);
    const child: ChildProcess = spawn(MOSQUITTO_BIN, ['-c', confPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let up = false;
    for (let i = 0; i < 100 && child.exitCode === null; i++) {
      if (await accepts(port)) {
        up = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const readLog = async (): Promise<string> => `${stderr}${await readFile(logPath, 'utf8').catch(() => '')}`;
    if (!up) {
      child.kill('SIGKILL');
      await exited;
      const text = await readLog();
      if (attempt < 3 && /Address already in use/i.test(text)) continue;
      await rm(dir, { recursive: true, force: true });
      throw new Error(`Mosquitto did not start: ${text.trim().split('\n').slice(-3).join(' | ') || 'no output'}`);
    }
    // a test process that ends without stop() (a timeout, a crash) must not leave the broker running
    const killOnExit = (): void => {
      child.kill('SIGKILL');
    };
    process.once('exit', killOnExit);
    let stopping: Promise<void> | undefined;
    return {
      url: `mqtt://127.0.0.1:${port}`,
      port,
      adminUser,
      adminPassword,
      dir,
      log: readLog,
      stop: () =>
        (stopping ??= (async () => {
          process.removeListener('exit', killOnExit);
          if (child.exitCode === null) {
            child.kill('SIGTERM');
            const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
            await exited;
            clearTimeout(timer);
          }
          await rm(dir, { recursive: true, force: true });
        })()),
    };
  }
}
