/**
 * `npm run agent -- email set|test|disable` as an owner runs them: the agent's
 * CLI in its own process (node --import tsx agent/main.ts), the password on
 * stdin or typed at a terminal (a real pseudo-terminal, through script(1)),
 * and a real SMTP server on 127.0.0.1 port 0.
 */
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emailKeyPath } from '../../agent/email/key-file.js';
import { loadEmailCredentials } from '../../agent/email/store.js';
import { Journal, JOURNAL_FILE } from '../../agent/journal/journal.js';
import { decode } from '../helpers/media.js';
import { findSecret, mailParts, startRecordingSmtp, type RecordingSmtp } from '../helpers/recording-proxy.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MAIN = join(ROOT, 'agent', 'main.ts');
const SMTP_USER = 'cli-smtp-user-93ad';
const SMTP_PASSWORD = 'Cli pass+word/with%25 odd chars';
const RECIPIENTS = ['cli.owner@example.org', 'cli.partner@example.org'];

let root: string;
let smtp: RecordingSmtp;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'camvault-email-cli-'));
  smtp = await startRecordingSmtp({ user: SMTP_USER, password: SMTP_PASSWORD });
});
afterAll(async () => {
  await smtp?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

/** A device's config file with its own data directory. */
function device(name: string): { config: string; dataDir: string } {
  const dataDir = join(root, name);
  const config = join(root, `${name}.json`);
  writeFileSync(
    config,
    JSON.stringify({ serial: 'CLIEMAIL0001', cloudUrl: 'https://127.0.0.1:9', input: 'tcp://127.0.0.1:9', dataDir, development: false, logLevel: 'silent' }),
  );
  return { config, dataDir };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The CLI in its own process; asynchronous, so the SMTP server in this process can answer it. */
function agentCli(args: string[], input = ''): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, FFMPEG_PATH: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function setArgs(config: string, over: string[] = []): string[] {
  return ['email', 'set', '--config', config, '--host', '127.0.0.1', '--port', String(smtp.port), '--security', 'none', '--user', SMTP_USER, '--to', RECIPIENTS[0]!, '--to', RECIPIENTS[1]!, '--interval', '5', ...over];
}

function expectNoSecretIn(text: string, secrets: string[] = [SMTP_USER, SMTP_PASSWORD, ...RECIPIENTS]): void {
  for (const s of secrets) expect(findSecret(text, s), s).toEqual([]);
}

function journalFiles(dataDir: string): Buffer {
  const base = join(dataDir, JOURNAL_FILE);
  return Buffer.concat([base, `${base}-wal`, `${base}-shm`].map((f) => (existsSync(f) ? readFileSync(f) : Buffer.alloc(0))));
}

function storedCredentials(dataDir: string) {
  const j = Journal.open(dataDir, { readonly: true });
  try {
    return { row: j.getEmailSettings(), creds: loadEmailCredentials(j, dataDir) };
  } finally {
    j.close();
  }
}

describe('agent email (CLI)', () => {
  it('email set takes the password on stdin, stores it encrypted under a 0600 key, and prints no setting', async () => {
    const { config, dataDir } = device('set');
    const r = await agentCli(setArgs(config), `${SMTP_PASSWORD}\n`);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      'email alerts on: 2 recipients, at most one email every 5 min per camera; the password is stored encrypted on this device only. Try it: npm run agent -- email test\n',
    );
    expectNoSecretIn(r.stdout + r.stderr);
    const { creds } = storedCredentials(dataDir);
    expect(creds).toEqual({
      settings: { host: '127.0.0.1', port: smtp.port, security: 'none', user: SMTP_USER, recipients: RECIPIENTS, from: RECIPIENTS[0], minIntervalMinutes: 5 },
      password: SMTP_PASSWORD,
    });
    expect(statSync(emailKeyPath(dataDir)).mode & 0o777).toBe(0o600);
    expect(findSecret(journalFiles(dataDir), SMTP_PASSWORD)).toEqual([]);
  });

  it('email test sends a test email with a picture and reports the SMTP code; agent status shows the line, without settings', async () => {
    const { config } = device('set');
    const before = smtp.mails.length;
    const r = await agentCli(['email', 'test', '--config', config]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('test email sent to 2 recipients, with a generated test picture (SMTP 250)\n');
    const mails = await smtp.waitForMails(before + 1);
    const mail = mails[before]!;
    expect(mail.to).toEqual(RECIPIENTS);
    expect(mail.user).toBe(SMTP_USER);
    const jpeg = mailParts(mail.raw).find((p) => p.contentType === 'image/jpeg');
    expect(jpeg).toBeDefined();
    const file = join(root, 'test.jpg');
    writeFileSync(file, jpeg!.body);
    expect(await decode(file)).toMatchObject({ code: 0, frames: 1, errors: [] });

    const st = await agentCli(['status', '--config', config]);
    expect(st.code).toBe(0);
    expect(st.stdout).toMatch(/^email alerts: {2}on, to 2 recipients, at most one every 5 min; none sent yet$/m);
    expectNoSecretIn(st.stdout);
    expect(st.stdout).not.toContain('127.0.0.1');
  });

  it('a password given as an argument, in any spelling, is refused with one clear line and nothing is stored', async () => {
    const { config, dataDir } = device('argv');
    const secret = 'Argv-Secret-4411';
    for (const extra of [['--password', secret], [`--password=${secret}`], ['-p', secret], ['--pass', secret], [secret]]) {
      const r = await agentCli(setArgs(config, extra), `${SMTP_PASSWORD}\n`);
      expect(r.code, extra.join(' ')).toBe(2);
      const first = r.stderr.split('\n')[0]!;
      expect(first).toMatch(/^agent: email set: .*the SMTP password is never taken from the command line/);
      expect(r.stderr + r.stdout).not.toContain(secret);
      expect(r.stdout).toBe('');
    }
    expect(existsSync(emailKeyPath(dataDir))).toBe(false);
    expect(existsSync(join(dataDir, JOURNAL_FILE))).toBe(false);
  });

  it('bad settings are refused in one line naming the option, before any password is read', async () => {
    const { config, dataDir } = device('bad');
    const badTo = await agentCli(setArgs(config).map((a) => (a === RECIPIENTS[1] ? 'not-an-address' : a)));
    expect(badTo).toMatchObject({ code: 2, stdout: '', stderr: 'agent: email set: email settings: --to: must be an email address\n' });
    const plain = await agentCli(setArgs(config).map((a) => (a === '127.0.0.1' ? 'smtp.example.com' : a)));
    expect(plain.code).toBe(2);
    expect(plain.stderr).toMatch(/^agent: email set: email settings: --security: "none" sends the password in clear; it is allowed only to a loopback host .*\n$/);
    const empty = await agentCli(setArgs(config), '\n');
    expect(empty).toMatchObject({ code: 1, stderr: 'agent: email set: the SMTP password is empty\n' });
    expect(existsSync(emailKeyPath(dataDir))).toBe(false);
  });

  it('email test reports a refused login by its codes only', async () => {
    const { config } = device('wrong');
    expect((await agentCli(setArgs(config), 'Not-The-Password-77\n')).code).toBe(0);
    const authsBefore = smtp.auths.length;
    const r = await agentCli(['email', 'test', '--config', config]);
    expect(r).toMatchObject({ code: 1, stdout: '', stderr: 'agent: email test: sending failed: EAUTH (SMTP 535 on AUTH PLAIN)\n' });
    expect(smtp.auths.slice(authsBefore)).toEqual([expect.objectContaining({ username: SMTP_USER, password: 'Not-The-Password-77', accepted: false })]);
    expectNoSecretIn(r.stderr, [SMTP_USER, 'Not-The-Password-77', ...RECIPIENTS]);
  });

  it('a key file that group or others can read is refused in one line', async () => {
    const { config, dataDir } = device('set');
    chmodSync(emailKeyPath(dataDir), 0o644);
    try {
      const r = await agentCli(['email', 'test', '--config', config]);
      expect(r).toMatchObject({
        code: 1,
        stdout: '',
        stderr: `agent: email test: the email key file ${emailKeyPath(dataDir)} is open to group or others (mode 0644); refusing to use it: chmod 600 it\n`,
      });
    } finally {
      chmodSync(emailKeyPath(dataDir), 0o600);
    }
  });

  it('email disable erases the password\'s ciphertext and plaintext and every setting from the database, the WAL and the disk', async () => {
    const { config, dataDir } = device('erase');
    expect((await agentCli(setArgs(config), `${SMTP_PASSWORD}\n`)).code).toBe(0);
    const { row } = storedCredentials(dataDir);
    const key = readFileSync(emailKeyPath(dataDir));
    expect(row).toBeDefined();
    // the ciphertext is where the search below looks: it must find it now
    expect(journalFiles(dataDir).includes(row!.password)).toBe(true);

    const r = await agentCli(['email', 'disable', '--config', config]);
    expect(r).toMatchObject({
      code: 0,
      stderr: '',
      stdout: 'email alerts off: the SMTP settings and password were erased from the journal, and the key file deleted\n',
    });
    expect(existsSync(emailKeyPath(dataDir))).toBe(false);
    const wal = `${join(dataDir, JOURNAL_FILE)}-wal`;
    expect(existsSync(wal) ? statSync(wal).size : 0).toBe(0);
    const bytes = journalFiles(dataDir);
    expect(bytes.includes(row!.password)).toBe(false);
    expect(bytes.includes(key)).toBe(false);
    for (const s of [SMTP_PASSWORD, SMTP_USER, ...RECIPIENTS]) expect(findSecret(bytes, s), s).toEqual([]);
    expect(storedCredentials(dataDir).row).toBeUndefined();

    expect(await agentCli(['email', 'disable', '--config', config])).toMatchObject({ code: 0, stdout: 'email alerts were not set up: nothing to erase\n' });
    expect((await agentCli(['status', '--config', config])).stdout).toMatch(/^email alerts: {2}off /m);
    expect(await agentCli(['email', 'test', '--config', config])).toMatchObject({ code: 1, stderr: 'agent: email test: email alerts are not set up: run email set first\n' });
  });

  it('at a terminal, email set prompts for the password and does not echo it', async () => {
    const { config, dataDir } = device('tty');
    const typed = 'Typed-At-The-Prompt-58';
    const cmd = [process.execPath, '--import', 'tsx', MAIN, ...setArgs(config)].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    // script(1) runs the command on a new pseudo-terminal and copies it to its stdout
    const child = spawn('script', ['-qfec', cmd, '/dev/null'], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, FFMPEG_PATH: '' } });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (c: string) => (out += c));
    child.stderr.on('data', () => undefined);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const until = Date.now() + 30_000;
    while (!out.includes('SMTP password: ') && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    expect(out).toContain('SMTP password: ');
    child.stdin.write(`${typed}\r`);
    const code = await exited;
    expect(code).toBe(0);
    expect(out).toContain('email alerts on: 2 recipients');
    expect(out).not.toContain(typed);
    expect(storedCredentials(dataDir).creds?.password).toBe(typed);
  });
});
