/**
 * The privacy proof of DESIGN P4 (issue 7): email-alert credentials stay on
 * the device.
 *
 * The whole pipeline runs with email alerts configured: a real cloud
 * (startTestCloud), the sim camera with motion events, the real agent as a
 * device runs it (the CLI, in its own process, at log level trace) set up
 * with `agent email set` (password on stdin) against a real SMTP server on
 * loopback that takes mail only with the right user and password. Every
 * byte the agent sends to the cloud crosses a recording TCP proxy (the cloud
 * signs its upload URLs for the proxy, so clip PUTs cross it too), and every
 * byte it sends to the MQTT broker (aedes in the cloud) crosses another (the
 * cloud tells devices the proxy's mqtt:// URL). Once at
 * least one alert email went out and a few clips were uploaded, the SMTP
 * user, password and recipients are searched for, plain, URL-encoded,
 * JSON-escaped and base64 (each alignment), in:
 *
 * - everything the agent sent to the cloud over HTTP (request lines,
 *   headers, bodies) and MQTT (CONNECT, every PUBLISH: its alerts and
 *   status), and everything it got back;
 * - the cloud's database: its files' bytes (SQLite: the database, WAL and
 *   shared-memory files) and every column of every row of every table;
 * - the object store's files (the cloud's whole data folder);
 * - every log line of the cloud (trace), the agent (trace) and the CLI.
 *
 * None is found anywhere; the SMTP server did get the credentials and the
 * mail. Positive controls show each search can find what it looks for.
 *
 * P5 (the Wi-Fi SSID is used for setup only): the agent takes no Wi-Fi SSID
 * today (it runs on a camera or NVR whose network the OS configures; there is
 * no setup flow that asks for one), so there is no SSID to search for. A
 * setup flow that takes one must add it to SECRETS here.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Journal } from '../../agent/journal/journal.js';
import { appContext } from '../../cloud/app.js';
import { AedesBroker } from '../../cloud/mqtt/index.js';
import { SimCamera } from '../../firmware-sim/camera.js';
import { createLogger } from '../../shared/log.js';
import { spawnAgent, writeAgentConfig, type AgentProcess } from '../helpers/agent-process.js';
import { api, createBindCode, registerAndLogin, setPlan, startTestCloud, type TestCloud } from '../helpers/cloud.js';
import { decode } from '../helpers/media.js';
import { findSecret, mailParts, RecordingProxy, secretForms, startRecordingSmtp, type RecordingSmtp } from '../helpers/recording-proxy.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SERIAL = 'SIMPRIVACY01';
const run = randomBytes(5).toString('hex');
// random per run, so a hit cannot be a leftover; characters that URL-encoding and base64 both change
const SMTP_USER = `smtp-user-${run}`;
const SMTP_PASSWORD = `Pw ${run}+/=%&?@:!"ä`;
const RECIPIENTS = [`alerts-${run}@example.org`, `backup-${run}@example.net`];
/** what must never leave the device (P4); add a Wi-Fi SSID here if the agent ever takes one (P5) */
const SECRETS: Record<string, string> = { 'SMTP user': SMTP_USER, 'SMTP password': SMTP_PASSWORD, 'recipient 1': RECIPIENTS[0]!, 'recipient 2': RECIPIENTS[1]! };

const quiet = createLogger({ level: 'silent' });

/** Every file under `dir`, recursively, with its bytes. */
function filesUnder(dir: string): { path: string; bytes: Buffer }[] {
  const out: { path: string; bytes: Buffer }[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.push({ path: p, bytes: readFileSync(p) });
    }
  };
  walk(dir);
  return out;
}

/** A cell of a row as bytes: blobs as they are, the rest as text. */
function cellBytes(v: unknown): Buffer {
  if (v === null || v === undefined) return Buffer.alloc(0);
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof Uint8Array) return Buffer.from(v);
  if (v instanceof Date) return Buffer.from(v.toISOString());
  if (typeof v === 'object') return Buffer.from(JSON.stringify(v));
  return Buffer.from(String(v));
}

/** Every column of every row of every table of the cloud's SQLite database, and the table count. */
function sqliteRows(file: string): { bytes: Buffer; tables: number; rows: number } {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const tables = (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).all() as { name: string }[]).map((t) => t.name);
    const parts: Buffer[] = [];
    let rows = 0;
    for (const t of tables) {
      for (const row of db.prepare(`SELECT * FROM "${t.replace(/"/g, '""')}"`).all() as Record<string, unknown>[]) {
        rows += 1;
        for (const v of Object.values(row)) parts.push(cellBytes(v), Buffer.from('\n'));
      }
    }
    return { bytes: Buffer.concat(parts), tables: tables.length, rows };
  } finally {
    db.close();
  }
}

/** The same over PostgreSQL: every table of the test cloud's schema. */
async function postgresRows(url: string): Promise<{ bytes: Buffer; tables: number; rows: number }> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const tables = (
      await c.query<{ table_name: string }>(`SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'`)
    ).rows.map((r) => r.table_name);
    const parts: Buffer[] = [];
    let rows = 0;
    for (const t of tables) {
      const r = await c.query(`SELECT * FROM "${t.replace(/"/g, '""')}"`);
      for (const row of r.rows as Record<string, unknown>[]) {
        rows += 1;
        for (const v of Object.values(row)) parts.push(cellBytes(v), Buffer.from('\n'));
      }
    }
    return { bytes: Buffer.concat(parts), tables: tables.length, rows };
  } finally {
    await c.end();
  }
}

/** The agent's CLI in its own process, asynchronous so this process's servers can answer it. */
function agentCli(args: string[], input: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'agent', 'main.ts'), ...args], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (output += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (output += c));
    child.on('error', reject);
    child.stdin.end(input);
    child.on('close', (code) => resolve({ code, output }));
  });
}

describe('P4: email-alert credentials stay on the device', () => {
  let dir: string;
  let smtp: RecordingSmtp;
  let proxy: RecordingProxy;
  let mqttProxy: RecordingProxy;
  let cloud: TestCloud;
  let camera: SimCamera;
  let agent: AgentProcess | undefined;
  let direct: string;
  let token: string;
  let accountEmail: string;
  let dataDir: string;
  let cloudLog = '';
  let cliOutput = '';
  const uploadedIds: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'camvault-privacy-'));
    dataDir = join(dir, 'agent');
    smtp = await startRecordingSmtp({ user: SMTP_USER, password: SMTP_PASSWORD });
    proxy = await RecordingProxy.start();
    mqttProxy = await RecordingProxy.start();
    cloud = await startTestCloud({
      publicUrl: proxy.url,
      // the broker URL the claim answer gives the device: the recording proxy in front of aedes
      mqtt: { publicUrl: `mqtt://127.0.0.1:${mqttProxy.address.port}` },
      logLevel: 'trace',
      logger: createLogger(
        { level: 'trace' },
        new Writable({
          write(chunk: Buffer, _enc, done) {
            cloudLog += chunk.toString();
            done();
          },
        }),
      ),
    });
    const port = (cloud.app.server.address() as AddressInfo).port;
    direct = `http://127.0.0.1:${port}`;
    proxy.target = { host: '127.0.0.1', port };
    const broker = appContext(cloud.app).broker;
    if (!(broker instanceof AedesBroker)) throw new Error('the test cloud runs no embedded MQTT broker');
    mqttProxy.target = { host: '127.0.0.1', port: broker.port };
    // the owner's own calls go straight to the cloud: the proxy records the device alone
    const account = await registerAndLogin(direct);
    token = account.token;
    accountEmail = account.email;
    await setPlan(direct, token, 'basic');
    const bindCode = await createBindCode(direct, token);
    camera = await SimCamera.start({ serial: SERIAL, width: 320, height: 180, fps: 10, gopSeconds: 1, motionEverySec: 3, logger: quiet });
    const configFile = writeAgentConfig(join(dir, 'agent.json'), {
      serial: SERIAL,
      cloudUrl: proxy.url,
      input: camera.streamUrl,
      eventsUrl: camera.eventsUrl,
      dataDir,
      segmentSeconds: 2,
      bindCode,
      development: true,
      logLevel: 'trace',
    });
    // the config file is the whole configuration: nothing from the caller's shell
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CAMVAULT_AGENT_')));

    // the owner sets email alerts up on the device, the password on stdin
    const set = await agentCli(
      ['email', 'set', '--config', configFile, '--host', '127.0.0.1', '--port', String(smtp.port), '--security', 'none', '--user', SMTP_USER, '--to', RECIPIENTS[0]!, '--to', RECIPIENTS[1]!],
      `${SMTP_PASSWORD}\n`,
      env,
    );
    cliOutput += set.output;
    expect(set.code, set.output).toBe(0);

    agent = spawnAgent(['run', '--config', configFile], join(dir, 'agent.log'), env);
    // at least one alert email, an alert over MQTT, and a few uploads (some of them event clips that follow motion)
    await smtp.waitForMails(1, 90_000);
    const alertTopic = Buffer.from(`devices/${SERIAL}/alerts`);
    const mqttDeadline = Date.now() + 60_000;
    while (!mqttProxy.sentBytes().includes(alertTopic) && Date.now() < mqttDeadline) await new Promise((r) => setTimeout(r, 200));
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const list = await api(direct, 'GET', `/v1/clips?serial=${SERIAL}`, { token });
      uploadedIds.splice(0, uploadedIds.length, ...((list.body?.clips ?? []) as { id: string }[]).map((c) => c.id));
      if (uploadedIds.length >= 4) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    // the device stops as it would: SIGTERM, its segment closed, its journal closed
    process.kill(agent.pid, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const exit = await Promise.race([agent.exited, new Promise<{ code: string }>((r) => (timer = setTimeout(() => r({ code: 'still running 30 s after SIGTERM' }), 30_000)))]);
    clearTimeout(timer);
    expect(exit.code, `agent exit; its log ends:\n${readFileSync(join(dir, 'agent.log'), 'utf8').split('\n').slice(-15).join('\n')}`).toBe(0);
    agent = undefined;
    // clips its last moments uploaded count too
    const list = await api(direct, 'GET', `/v1/clips?serial=${SERIAL}&limit=100`, { token });
    uploadedIds.splice(0, uploadedIds.length, ...((list.body?.clips ?? []) as { id: string }[]).map((c) => c.id));
  }, 240_000);

  afterAll(async () => {
    if (agent) {
      try {
        process.kill(-agent.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await camera?.stop();
    await cloud?.close();
    await proxy?.close();
    await mqttProxy?.close();
    await smtp?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function expectAbsent(where: string, haystack: Buffer | string): void {
    for (const [name, secret] of Object.entries(SECRETS)) {
      expect(findSecret(haystack, secret), `${name} found in ${where}`).toEqual([]);
    }
  }

  it('the pipeline ran: an alert email went out with the owner\'s credentials, and clips were uploaded', async () => {
    expect(uploadedIds.length).toBeGreaterThanOrEqual(4);
    expect(smtp.auths.filter((a) => a.accepted)).not.toHaveLength(0);
    for (const a of smtp.auths) expect(a).toMatchObject({ username: SMTP_USER, password: SMTP_PASSWORD, accepted: true });
    const mail = smtp.mails[0]!;
    expect(mail).toMatchObject({ user: SMTP_USER, to: RECIPIENTS });
    expect(mail.raw.toString('latin1')).toContain(`Subject: camvault: motion on ${SERIAL}`);
    const jpeg = mailParts(mail.raw).find((p) => p.contentType === 'image/jpeg');
    expect(jpeg).toBeDefined();
    writeFileSync(join(dir, 'alert.jpg'), jpeg!.body);
    expect(await decode(join(dir, 'alert.jpg'))).toMatchObject({ code: 0, frames: 1 });
    // the rate limit (10 minutes by default) held: motion every 3 s, one email
    expect(smtp.mails).toHaveLength(1);
    expect(readFileSync(join(dir, 'agent.log'), 'utf8')).toContain('"msg":"email alert sent"');
  });

  it('the search finds every form of a secret it looks for (plain, URL-encoded, JSON-escaped, base64 at each alignment)', () => {
    for (const form of secretForms(SMTP_PASSWORD)) {
      const planted = Buffer.concat([randomBytes(37), Buffer.from(form.value), randomBytes(11)]);
      expect(findSecret(planted, SMTP_PASSWORD), form.name).toContain(form.name);
    }
    for (const k of [0, 1, 2]) {
      const encoded = Buffer.concat([randomBytes(k), Buffer.from(`{"password":"${SMTP_PASSWORD}"}`)]).toString('base64');
      expect(findSecret(`Authorization: Basic ${encoded}`, SMTP_PASSWORD), `base64 at offset ${k}`).not.toEqual([]);
    }
  });

  it('nothing the agent sent to the cloud, or got back, holds the SMTP user, password or recipients', () => {
    const agentToCloud = proxy.sentBytes();
    const cloudToAgent = proxy.receivedBytes();
    // control: the capture holds the device's requests, its credential and a clip's bytes
    const text = agentToCloud.toString('latin1');
    expect(text).toContain('POST /v1/device/claim HTTP/1.1');
    expect(text).toContain('POST /v1/device/uploads HTTP/1.1');
    expect(text).toMatch(/PUT \/objects\/\S+ HTTP\/1\.1/);
    const j = Journal.open(dataDir, { readonly: true });
    let deviceToken: string;
    let clipPath: string | undefined;
    try {
      deviceToken = j.getCredentials()!.deviceToken;
      clipPath = j.listClips().find((c) => c.state === 'uploaded' && existsSync(c.path))?.path;
    } finally {
      j.close();
    }
    expect(findSecret(agentToCloud, deviceToken)).toContain('plain');
    expect(clipPath).toBeDefined();
    expect(agentToCloud.includes(readFileSync(clipPath!))).toBe(true);

    expectAbsent('the bytes the agent sent to the cloud', agentToCloud);
    expectAbsent('the bytes the cloud sent to the agent', cloudToAgent);
  });

  it('nothing the agent published over MQTT, or got from the broker, holds them', () => {
    const agentToBroker = mqttProxy.sentBytes();
    // control: the capture holds the device's session: its login, its status and its motion alerts
    const j = Journal.open(dataDir, { readonly: true });
    let mqttPassword: string;
    try {
      mqttPassword = j.getCredentials()!.mqtt.password;
    } finally {
      j.close();
    }
    expect(findSecret(agentToBroker, mqttPassword)).toContain('plain');
    expect(agentToBroker.includes(Buffer.from(`devices/${SERIAL}/status`))).toBe(true);
    expect(agentToBroker.includes(Buffer.from(`devices/${SERIAL}/alerts`))).toBe(true);
    expect(agentToBroker.includes(Buffer.from('"type":"motion"'))).toBe(true);

    expectAbsent('the bytes the agent sent to the MQTT broker', agentToBroker);
    expectAbsent('the bytes the MQTT broker sent to the agent', mqttProxy.receivedBytes());
  });

  it('the cloud\'s database holds none of them: not in its files, not in any column of any row', async () => {
    const dump = cloud.config.databaseUrl ? await postgresRows(cloud.config.databaseUrl) : sqliteRows(join(cloud.config.dataDir, 'camvault.db'));
    // control: the dump covers real data (the account's email, the device)
    expect(dump.tables).toBeGreaterThan(5);
    expect(dump.rows).toBeGreaterThan(uploadedIds.length);
    expect(dump.bytes.includes(Buffer.from(accountEmail))).toBe(true);
    expect(dump.bytes.includes(Buffer.from(SERIAL))).toBe(true);
    expectAbsent('the rows of the cloud database', dump.bytes);
    if (!cloud.config.databaseUrl) {
      const files = ['camvault.db', 'camvault.db-wal', 'camvault.db-shm'].map((f) => join(cloud.config.dataDir, f)).filter((f) => existsSync(f));
      expect(files.length).toBeGreaterThanOrEqual(1);
      const bytes = Buffer.concat(files.map((f) => readFileSync(f)));
      expect(bytes.includes(Buffer.from(SERIAL))).toBe(true);
      expectAbsent('the cloud database files', bytes);
    }
  });

  it('the object store and every other file the cloud wrote hold none of them', () => {
    const files = filesUnder(cloud.config.dataDir);
    // control: the uploaded clips are among them
    const clipFiles = files.filter((f) => uploadedIds.some((id) => f.path.endsWith(`${id}.mp4`)));
    expect(clipFiles.length).toBe(uploadedIds.length);
    for (const f of files) expectAbsent(f.path, f.bytes);
    expect(files.reduce((n, f) => n + statSync(f.path).size, 0)).toBeGreaterThan(0);
  });

  it('no log line of the cloud, the agent or its CLI holds them', () => {
    const agentLog = readFileSync(join(dir, 'agent.log'), 'utf8');
    // control: the logs are there, and detailed
    expect(cloudLog.split('\n').length).toBeGreaterThan(20);
    expect(cloudLog).toContain('/v1/device/uploads');
    expect(agentLog).toContain('"msg":"clip uploaded"');
    expect(agentLog).toContain('"level":20');
    expect(cliOutput).toContain('email alerts on: 2 recipients');
    expectAbsent('the cloud log', cloudLog);
    expectAbsent('the agent log', agentLog);
    expectAbsent('the CLI output', cliOutput);
  });

  it('on the device, the journal holds the password only encrypted', () => {
    const journal = readFileSync(join(dataDir, 'agent.db'));
    const wal = existsSync(join(dataDir, 'agent.db-wal')) ? readFileSync(join(dataDir, 'agent.db-wal')) : Buffer.alloc(0);
    expect(findSecret(Buffer.concat([journal, wal]), SMTP_PASSWORD)).toEqual([]);
  });
});
