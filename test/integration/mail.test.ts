/**
 * The cloud's own mail through a real SMTP server (smtp-server on 127.0.0.1
 * port 0, with authentication): a registration's code arrives, addressed to
 * the new account, and verifies it. The relay's password never reaches a log
 * line or an error message.
 */
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { SMTPServer, type SMTPServerSession } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadCloudConfig } from '../../cloud/config.js';
import { extractCode } from '../../cloud/mail/index.js';
import { createLogger } from '../../shared/log.js';
import { call } from '../helpers/api-checks.js';
import { startTestCloud, type TestCloud } from '../helpers/cloud.js';

const SMTP_USER = 'camvault-relay';
const SMTP_PASSWORD = 'Relay-Pa$$word-7f3a9c';

interface Received {
  from: string;
  to: string[];
  data: string;
}

/** An SMTP server that takes mail only from SMTP_USER / SMTP_PASSWORD and keeps what it gets. */
async function startSmtp(): Promise<{ port: number; received: Received[]; arrived: (to: string) => Promise<Received>; close(): Promise<void> }> {
  const received: Received[] = [];
  const waiters: { to: string; resolve: (r: Received) => void }[] = [];
  const server = new SMTPServer({
    authMethods: ['PLAIN', 'LOGIN'],
    disabledCommands: ['STARTTLS'],
    allowInsecureAuth: true,
    logger: false,
    onAuth(auth, _session, cb) {
      if (auth.username === SMTP_USER && auth.password === SMTP_PASSWORD) cb(null, { user: SMTP_USER });
      else cb(new Error('Invalid username or password'));
    },
    onData(stream, session: SMTPServerSession, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const mail: Received = {
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          data: Buffer.concat(chunks).toString('utf8').replace(/\r\n/g, '\n'),
        };
        received.push(mail);
        for (const w of waiters.filter((x) => mail.to.includes(x.to))) w.resolve(mail);
        cb();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.server.address() as AddressInfo).port;
  return {
    port,
    received,
    arrived: (to) => {
      const found = received.find((r) => r.to.includes(to));
      return found ? Promise.resolve(found) : new Promise((resolve) => waiters.push({ to, resolve }));
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A log sink; `until(text)` resolves once a line containing it has been written. */
function logSink(): { lines: () => string; until: (text: string) => Promise<void>; stream: Writable } {
  let text = '';
  const waiters: { needle: string; resolve: () => void }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      for (const w of waiters.filter((x) => text.includes(x.needle))) w.resolve();
      done();
    },
  });
  return {
    lines: () => text,
    until: (needle) => (text.includes(needle) ? Promise.resolve() : new Promise((resolve) => waiters.push({ needle, resolve }))),
    stream,
  };
}

/** every form the password could take in a leak: as is, URL-encoded, and inside AUTH PLAIN / LOGIN */
const passwordForms = [
  SMTP_PASSWORD,
  encodeURIComponent(SMTP_PASSWORD),
  Buffer.from(SMTP_PASSWORD).toString('base64'),
  Buffer.from(`\0${SMTP_USER}\0${SMTP_PASSWORD}`).toString('base64'),
];

describe('cloud mail through a real SMTP server', () => {
  let smtp: Awaited<ReturnType<typeof startSmtp>>;
  beforeAll(async () => {
    smtp = await startSmtp();
  });
  afterAll(async () => {
    await smtp?.close();
  });

  it('a registration mails its code through the relay, to the new address, and the code verifies the account', async () => {
    const log = logSink();
    let cloud: TestCloud | undefined;
    try {
      cloud = await startTestCloud({
        logger: createLogger({ level: 'trace' }, log.stream),
        mail: {
          smtpUrl: `smtp://${SMTP_USER}:${encodeURIComponent(SMTP_PASSWORD)}@127.0.0.1:${smtp.port}`,
          from: 'camvault <no-reply@mail.test>',
        },
      });
      expect(cloud.mailer.kind).toBe('smtp');
      const email = 'new.owner@example.com';
      const password = 'correct horse battery staple';
      expect((await call(cloud.url, 'POST', '/v1/accounts', { body: { email, password } })).status).toBe(202);

      const mail = await smtp.arrived(email);
      expect(mail.to).toEqual([email]);
      expect(mail.from).toBe('no-reply@mail.test');
      expect(mail.data).toMatch(/^Subject: camvault: your verification code$/m);
      const code = extractCode(mail.data);
      expect(code).toMatch(/^\d{8}$/);

      expect((await call(cloud.url, 'POST', '/v1/accounts/verify', { body: { email, code } })).status).toBe(200);
      expect((await call(cloud.url, 'POST', '/v1/sessions', { body: { email, password } })).status).toBe(200);

      expect(log.lines()).toContain('mail relay configured');
      for (const secret of [...passwordForms, email, code as string]) expect(log.lines()).not.toContain(secret);
    } finally {
      await cloud?.close();
    }
  });

  it('refused relay credentials: the request still answers 202, and the failure is logged without the password', async () => {
    const log = logSink();
    let cloud: TestCloud | undefined;
    const wrong = `${SMTP_PASSWORD}-but-wrong`;
    try {
      cloud = await startTestCloud({
        logger: createLogger({ level: 'trace' }, log.stream),
        mail: { smtpUrl: `smtp://${SMTP_USER}:${encodeURIComponent(wrong)}@127.0.0.1:${smtp.port}`, from: 'no-reply@mail.test' },
      });
      const email = 'unlucky@example.com';
      expect((await call(cloud.url, 'POST', '/v1/accounts', { body: { email, password: 'correct horse battery staple' } })).status).toBe(202);
      await log.until('mail not sent');
      const failure = log.lines().split('\n').find((l) => l.includes('mail not sent'));
      expect(JSON.parse(failure as string).mailError).toMatchObject({ code: 'EAUTH', responseCode: 535 });
      for (const secret of [...passwordForms, encodeURIComponent(wrong), wrong, email]) expect(log.lines()).not.toContain(secret);
      expect(smtp.received.some((r) => r.to.includes(email))).toBe(false);
    } finally {
      await cloud?.close();
    }
  });

  it('a wrong SMTP URL stops the configuration with a line that names the field, not the value', () => {
    const bad = `http://${SMTP_USER}:${SMTP_PASSWORD}@relay.example.com`;
    let err: unknown;
    try {
      loadCloudConfig({ env: { CAMVAULT_SMTP_URL: bad } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/mail\.smtpUrl: must be an smtp:\/\/ or smtps:\/\/ URL/);
    for (const secret of passwordForms) expect((err as Error).message).not.toContain(secret);
    expect(loadCloudConfig({ env: { CAMVAULT_SMTP_URL: 'smtps://u:p@relay.example.com:465', CAMVAULT_MAIL_FROM: 'x@example.com' } }).mail).toEqual({
      smtpUrl: 'smtps://u:p@relay.example.com:465',
      from: 'x@example.com',
    });
  });
});
