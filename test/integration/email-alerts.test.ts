/**
 * Email alerts on the device (issue 7), with the real parts: the sim camera's
 * stream and motion events, the agent recording with ffmpeg, and a real SMTP
 * server (smtp-server on 127.0.0.1 port 0) that takes mail only from the
 * configured user and password. The cloud side is the device API stub: email
 * never goes through the cloud.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, type ClipQueued } from '../../agent/agent.js';
import type { AgentConfig, AgentConfigInput } from '../../agent/config.js';
import type { EmailAlertResult } from '../../agent/email/alerts.js';
import { EmailSendError, sendAlertMail } from '../../agent/email/mailer.js';
import { parseEmailSettings, type EmailSettingsInput } from '../../agent/email/settings.js';
import { eraseEmailSettings, saveEmailSettings } from '../../agent/email/store.js';
import { Journal } from '../../agent/journal/journal.js';
import { formatDeviceStatus, readDeviceStatus } from '../../agent/status.js';
import { SimCamera } from '../../firmware-sim/camera.js';
import { createLogger } from '../../shared/log.js';
import { simAgentConfig } from '../helpers/agent-run.js';
import { DeviceApiStub } from '../helpers/device-api-stub.js';
import { decode, waitFor } from '../helpers/media.js';
import { findSecret, mailParts, startRecordingSmtp, type RecordingSmtp, type SmtpMail } from '../helpers/recording-proxy.js';
import { makeTestPki, type TestPki } from '../helpers/tls.js';

const SERIAL = 'SIMEMAIL0001';
const SMTP_USER = 'cam-alerts-user-5b2d';
const SMTP_PASSWORD = 'S3cret smtp+pass/word%9q';
const RECIPIENTS = ['owner.one@example.org', 'owner.two@example.org'];
const quiet = createLogger({ level: 'silent' });

let root: string;
let camera: SimCamera;
let cloud: DeviceApiStub;
let smtp: RecordingSmtp;
let logText = '';
const logger = createLogger(
  { level: 'debug' },
  new Writable({
    write(chunk: Buffer, _enc, done) {
      logText += chunk.toString();
      done();
    },
  }),
);

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'camvault-email-it-'));
  smtp = await startRecordingSmtp({ user: SMTP_USER, password: SMTP_PASSWORD });
  cloud = await DeviceApiStub.start();
  camera = await SimCamera.start({ serial: SERIAL, width: 320, height: 180, fps: 10, gopSeconds: 1, motionEverySec: 0, logger: quiet });
});

afterAll(async () => {
  await camera?.stop();
  await cloud?.close();
  await smtp?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

const config = (dataDir: string, over: Partial<AgentConfigInput> = {}): AgentConfig => simAgentConfig({ serial: SERIAL, camera, cloud }, dataDir, over);

function emailSettings(over: Partial<EmailSettingsInput> = {}): EmailSettingsInput {
  return { host: '127.0.0.1', port: smtp.port, security: 'none', user: SMTP_USER, recipients: RECIPIENTS, from: 'camera@example.org', ...over };
}

/** What `email set` does, without the CLI (the CLI has its own suite). */
function configure(dataDir: string, password: string, over: Partial<EmailSettingsInput> = {}): void {
  const j = Journal.open(dataDir);
  try {
    saveEmailSettings(j, dataDir, parseEmailSettings(emailSettings(over), { development: false }), password);
  } finally {
    j.close();
  }
}

/** Starts an agent and waits until it records and listens to the camera's motion events. */
async function startAgent(dataDir: string): Promise<{ agent: Agent; results: EmailAlertResult[]; queued: ClipQueued[] }> {
  const agent = await Agent.start({ config: config(dataDir), logger });
  const results: EmailAlertResult[] = [];
  const queued: ClipQueued[] = [];
  agent.on('email-sent', (r: EmailAlertResult) => results.push(r));
  agent.on('email-failed', (r: EmailAlertResult) => results.push(r));
  agent.on('clip-queued', (c: ClipQueued) => queued.push(c));
  try {
    await waitFor(() => camera.eventsClientCount >= 1, 20_000, 'the agent on the event feed');
    await waitFor(() => queued.length >= 1, 25_000, 'a first clip');
  } catch (err) {
    await agent.stop();
    throw err;
  }
  return { agent, results, queued };
}

/** Triggers a motion and waits for the event clip that holds it. */
async function motionAndClip(queued: ClipQueued[]): Promise<{ at: number; clip: ClipQueued }> {
  const at = Date.now();
  camera.triggerMotion();
  let clip: ClipQueued | undefined;
  await waitFor(
    () => (clip = queued.find((c) => c.kind === 'event' && c.startMs - 1500 <= at && c.startMs + c.durationMs + 1500 >= at)) !== undefined,
    25_000,
    'the event clip of the motion',
  );
  return { at, clip: clip as ClipQueued };
}

function jpegOf(mail: SmtpMail): Buffer {
  const part = mailParts(mail.raw).find((p) => p.contentType === 'image/jpeg');
  if (!part) throw new Error('the mail has no image/jpeg part');
  return part.body;
}

function expectNoSecretIn(text: string): void {
  for (const secret of [SMTP_USER, SMTP_PASSWORD, ...RECIPIENTS]) expect(findSecret(text, secret), secret).toEqual([]);
}

describe('email alerts', () => {
  it('a motion mails every recipient a JPEG frame of its event clip, through the SMTP server with the owner\'s credentials', async () => {
    const dataDir = join(root, 'send');
    configure(dataDir, SMTP_PASSWORD);
    const before = smtp.mails.length;
    const { agent, results, queued } = await startAgent(dataDir);
    try {
      const { clip } = await motionAndClip(queued);
      await waitFor(() => results.length >= 1, 30_000, 'the email alert');
      expect(results[0]).toMatchObject({ code: 'OK', clipId: clip.clipId, snapshot: true, responseCode: 250 });
    } finally {
      await agent.stop();
    }
    const mails = await smtp.waitForMails(before + 1);
    const mail = mails[before] as SmtpMail;
    expect(mail.user).toBe(SMTP_USER);
    expect(mail.to).toEqual(RECIPIENTS);
    expect(smtp.auths.at(-1)).toMatchObject({ username: SMTP_USER, password: SMTP_PASSWORD, accepted: true });
    const text = mailParts(mail.raw).find((p) => p.contentType === 'text/plain')?.body.toString('utf8') ?? '';
    expect(text).toContain(`Camera ${SERIAL} saw motion`);
    expect(text).toContain(results[0]!.clipId as string);
    const jpeg = jpegOf(mail);
    expect(jpeg.subarray(0, 3).equals(Buffer.from([0xff, 0xd8, 0xff]))).toBe(true);
    const file = join(root, 'snapshot.jpg');
    writeFileSync(file, jpeg);
    const decoded = await decode(file);
    expect(decoded).toMatchObject({ code: 0, frames: 1, errors: [] });

    // the log says it happened, with codes, and holds no setting
    expect(logText).toContain('"msg":"email alert sent"');
    expect(logText).toContain('"smtpCode":250');
    expectNoSecretIn(logText);
    // the journal holds the password only encrypted
    expect(findSecret(readFileSync(join(dataDir, 'agent.db')), SMTP_PASSWORD)).toEqual([]);
  });

  it('sends at most one email per camera in the interval, and a restart does not lift the limit', async () => {
    const dataDir = join(root, 'limit');
    configure(dataDir, SMTP_PASSWORD, { minIntervalMinutes: 10 });
    const before = smtp.mails.length;
    let run = await startAgent(dataDir);
    try {
      await motionAndClip(run.queued);
      await waitFor(() => run.results.length >= 1, 30_000, 'the first email alert');
      expect(run.results[0]?.code).toBe('OK');
      // a second motion within the interval: its event clip is recorded, no email follows
      await motionAndClip(run.queued);
      await new Promise((r) => setTimeout(r, 1500));
      expect(run.results).toHaveLength(1);
    } finally {
      await run.agent.stop();
    }
    expect(smtp.mails.length).toBe(before + 1);

    run = await startAgent(dataDir);
    try {
      await motionAndClip(run.queued);
      await new Promise((r) => setTimeout(r, 1500));
      expect(run.results).toHaveLength(0);
      expect(smtp.mails.length).toBe(before + 1);

      // ten minutes on (the last attempt moved back, through another connection as `email` commands use)
      const j = Journal.open(dataDir, { recover: false });
      try {
        j.recordEmailAttempt(`${SERIAL}/main`, Date.now() - 10 * 60_000 - 1000);
      } finally {
        j.close();
      }
      await motionAndClip(run.queued);
      await waitFor(() => run.results.length >= 1, 30_000, 'the email alert after the interval');
      expect(run.results[0]?.code).toBe('OK');
    } finally {
      await run.agent.stop();
    }
    expect(smtp.mails.length).toBe(before + 2);
  });

  it('a refused password is logged and shown in status with its SMTP codes only, and no mail goes', async () => {
    const dataDir = join(root, 'refused');
    configure(dataDir, 'a wrong password, surely');
    const before = smtp.mails.length;
    const authsBefore = smtp.auths.length;
    const { agent, results, queued } = await startAgent(dataDir);
    try {
      await motionAndClip(queued);
      await waitFor(() => results.length >= 1, 30_000, 'the failed email alert');
    } finally {
      await agent.stop();
    }
    expect(results[0]).toMatchObject({ code: 'EAUTH 535', responseCode: 535 });
    expect(smtp.auths.slice(authsBefore)).toEqual([expect.objectContaining({ username: SMTP_USER, accepted: false })]);
    expect(smtp.mails.length).toBe(before);
    expect(logText).toMatch(/"code":"EAUTH","smtpCode":535,"command":"AUTH PLAIN","msg":"email alert failed"/);
    expectNoSecretIn(logText);
    expect(findSecret(logText, 'a wrong password, surely')).toEqual([]);

    const st = await readDeviceStatus({ dataDir, channel: 'main', storage: { minFreeBytes: 0 } });
    expect(st.email).toMatchObject({ enabled: true, recipients: 2, minIntervalMinutes: 10, lastSentAt: null, lastCode: 'EAUTH 535' });
    const line = formatDeviceStatus(st).split('\n').find((l) => l.startsWith('email alerts:'));
    expect(line).toMatch(/^email alerts: {2}on, to 2 recipients, at most one every 10 min; none sent yet; last attempt failed: EAUTH 535 at /);
    expectNoSecretIn(formatDeviceStatus(st));
    expect(formatDeviceStatus(st)).not.toContain('127.0.0.1');
  });

  it('email disable, run while the agent runs, stops the next alert', async () => {
    const dataDir = join(root, 'disable');
    configure(dataDir, SMTP_PASSWORD);
    const before = smtp.mails.length;
    const { agent, results, queued } = await startAgent(dataDir);
    try {
      const j = Journal.open(dataDir, { recover: false });
      try {
        expect(eraseEmailSettings(j, dataDir)).toEqual({ erased: true, checkpointed: true, keyDeleted: true });
      } finally {
        j.close();
      }
      await motionAndClip(queued);
      await new Promise((r) => setTimeout(r, 1500));
    } finally {
      await agent.stop();
    }
    expect(results).toEqual([]);
    expect(smtp.mails.length).toBe(before);
    const st = await readDeviceStatus({ dataDir, channel: 'main', storage: { minFreeBytes: 0 } });
    expect(st.email?.enabled).toBe(false);
  });
});

describe('email alerts over TLS', () => {
  let pki: TestPki;
  beforeAll(() => {
    pki = makeTestPki();
  });
  afterAll(() => pki?.remove());

  const mail = { subject: 'tls check', text: 'hello' };
  const creds = (port: number, security: 'tls' | 'starttls') => ({
    settings: parseEmailSettings(emailSettings({ port, security }), { development: false }),
    password: SMTP_PASSWORD,
  });

  it('STARTTLS and implicit TLS to a server the agent\'s caFile vouches for: authenticated and delivered', async () => {
    const key = readFileSync(pki.server.keyFile);
    const cert = readFileSync(pki.server.certFile);
    for (const [security, server] of [
      ['starttls', await startRecordingSmtp({ user: SMTP_USER, password: SMTP_PASSWORD, starttls: { key, cert } })],
      ['tls', await startRecordingSmtp({ user: SMTP_USER, password: SMTP_PASSWORD, secure: { key, cert } })],
    ] as const) {
      try {
        const r = await sendAlertMail(creds(server.port, security), mail, { caFile: pki.caFile });
        expect(r).toMatchObject({ responseCode: 250, accepted: 2, rejected: 0 });
        expect(server.auths).toEqual([expect.objectContaining({ username: SMTP_USER, accepted: true })]);
        expect(server.mails).toHaveLength(1);
      } finally {
        await server.close();
      }
    }
  });

  it('a certificate no trusted CA issued is refused before the password is sent; "starttls" never falls back to plain', async () => {
    const key = readFileSync(pki.selfSigned.keyFile);
    const cert = readFileSync(pki.selfSigned.certFile);
    const tlsServer = await startRecordingSmtp({ user: SMTP_USER, password: SMTP_PASSWORD, secure: { key, cert } });
    // a server that does not offer STARTTLS at all, as a downgrading middlebox would make it look
    const plainServer = await startRecordingSmtp({ user: SMTP_USER, password: SMTP_PASSWORD });
    try {
      const refused = await sendAlertMail(creds(tlsServer.port, 'tls'), mail, { caFile: pki.caFile }).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(EmailSendError);
      expect(['ETLS', 'ESOCKET', 'ECONNECTION']).toContain((refused as EmailSendError).code);
      expect(tlsServer.auths).toEqual([]);
      const downgraded = await sendAlertMail(creds(plainServer.port, 'starttls'), mail, { caFile: pki.caFile }).catch((e: unknown) => e);
      expect(downgraded).toBeInstanceOf(EmailSendError);
      expect(plainServer.auths).toEqual([]);
      expect(plainServer.mails).toEqual([]);
      for (const e of [refused, downgraded]) expectNoSecretIn((e as Error).message);
    } finally {
      await tlsServer.close();
      await plainServer.close();
    }
  });
});
