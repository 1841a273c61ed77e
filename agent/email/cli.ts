import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { AgentConfigError, loadAgentConfig, type AgentConfig } from '../config.js';
import { Journal, JOURNAL_FILE } from '../journal/journal.js';
import { EmailCryptoError } from './crypto.js';
import { deleteEmailKey, EmailKeyError } from './key-file.js';
import { EmailSendError, sendAlertMail } from './mailer.js';
import { PasswordInputError, readPassword } from './password-input.js';
import { checkPassword, DEFAULT_PORTS, EMAIL_SECURITY, EmailSettingsError, parseEmailSettings, type EmailSecurity } from './settings.js';
import { grabSnapshot, testPicture } from './snapshot.js';
import { eraseEmailSettings, loadEmailCredentials, saveEmailSettings } from './store.js';

/**
 * `npm run agent -- email set|test|disable` (issue 7): the device owner's
 * email alerts, administered on the device. Every line printed names fields
 * and codes, never the host, user, password or addresses. Exit codes: 0 done,
 * 1 it could not be done, 2 the command line is wrong.
 */

export const EMAIL_USAGE = [
  'usage: npm run agent -- email set --config FILE --host HOST [--port N] [--security tls|starttls|none] --user USER --to ADDRESS [--to ADDRESS …] [--from ADDRESS] [--interval MINUTES]',
  '         (the SMTP password is read from stdin, or typed at a prompt that does not echo; never from an argument)',
  '       npm run agent -- email test --config FILE',
  '       npm run agent -- email disable --config FILE',
].join('\n');

export interface EmailCliIo {
  stdin: NodeJS.ReadStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
}

class CliFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/** An argument that looks like a password option, in any of its spellings (the value is never echoed). */
const PASSWORD_ARG = /^--?(p|pw|pwd|pass|passwd|password|smtp-pass|smtp-password|secret)(=|$)/i;

const REFUSE_PASSWORD_ARG =
  'the SMTP password is never taken from the command line (other users can read it in ps, and the shell keeps it in its history): ' +
  'pipe it on stdin (printf \'%s\' "$PASSWORD" | npm run agent -- email set …) or type it at the prompt';

/** parseArgs' own messages quote the offending argument, which may be a password typed in the wrong place. */
function argsError(err: unknown): CliFailure {
  const e = err as { code?: string; message?: string };
  if (e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') return new CliFailure(`unexpected argument (options only; ${REFUSE_PASSWORD_ARG})\n${EMAIL_USAGE}`, 2);
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const name = /'(--?[A-Za-z][A-Za-z0-9-]*)/.exec(e.message ?? '')?.[1];
    return new CliFailure(`unknown option${name ? ` ${name}` : ''}\n${EMAIL_USAGE}`, 2);
  }
  if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    const name = /'(--?[A-Za-z][A-Za-z0-9-]*)/.exec(e.message ?? '')?.[1];
    return new CliFailure(`${name ? `option ${name}` : 'an option'} needs a value\n${EMAIL_USAGE}`, 2);
  }
  return new CliFailure(`invalid arguments\n${EMAIL_USAGE}`, 2);
}

function loadConfig(file: string | undefined, env: NodeJS.ProcessEnv): AgentConfig {
  try {
    return loadAgentConfig({ file, env });
  } catch (err) {
    if (err instanceof AgentConfigError) throw new CliFailure(err.message, 1);
    throw err;
  }
}

/** The journal as a second process opens it while the agent may run: migrated, but the agent's uploads left alone. */
function openJournal(cfg: AgentConfig): Journal {
  return Journal.open(cfg.dataDir, { recover: false });
}

const one = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

async function set(args: string[], io: EmailCliIo): Promise<number> {
  let values: {
    config?: string;
    host?: string;
    port?: string;
    security?: string;
    user?: string;
    to?: string[];
    from?: string;
    interval?: string;
  };
  try {
    ({ values } = parseArgs({
      args,
      options: {
        config: { type: 'string', short: 'c' },
        host: { type: 'string' },
        port: { type: 'string' },
        security: { type: 'string' },
        user: { type: 'string' },
        to: { type: 'string', multiple: true },
        from: { type: 'string' },
        interval: { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw argsError(err);
  }
  const security = (values.security ?? 'starttls') as EmailSecurity;
  if (!EMAIL_SECURITY.includes(security)) throw new CliFailure(`--security must be one of ${EMAIL_SECURITY.join(', ')}`, 2);
  const number = (flag: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    if (!/^\d{1,6}$/.test(v)) throw new CliFailure(`--${flag} must be a whole number`, 2);
    return Number(v);
  };
  const recipients = (values.to ?? []).flatMap((t) => t.split(',')).map((t) => t.trim()).filter(Boolean);
  const cfg = loadConfig(values.config, io.env);
  const input = {
    host: values.host,
    port: number('port', values.port) ?? DEFAULT_PORTS[security],
    security,
    user: values.user,
    recipients,
    // relays usually want the account's own address as the sender; else the first recipient
    from: values.from ?? (values.user && /^[^@\s]+@[^@\s]+$/.test(values.user) ? values.user : recipients[0]),
    ...(values.interval !== undefined ? { minIntervalMinutes: number('interval', values.interval) } : {}),
  };
  let settings;
  try {
    settings = parseEmailSettings(input, { development: cfg.development });
  } catch (err) {
    if (err instanceof EmailSettingsError) {
      // name the flag the user typed, not the field
      const msg = err.message.replace(/^email settings: recipients(\.\d+)?:/, 'email settings: --to:').replace(/^email settings: minIntervalMinutes:/, 'email settings: --interval:');
      throw new CliFailure(msg.replace(/^email settings: (host|port|security|user|from):/, 'email settings: --$1:'), 2);
    }
    throw err;
  }
  let password: string;
  try {
    password = await readPassword(io.stdin, io.stderr);
  } catch (err) {
    if (err instanceof PasswordInputError) throw new CliFailure(`cannot read the SMTP password: ${err.message}`, err.message === 'interrupted' ? 130 : 1);
    throw err;
  }
  try {
    checkPassword(password);
  } catch (err) {
    if (err instanceof EmailSettingsError) throw new CliFailure(err.message, 1);
    throw err;
  }
  const journal = openJournal(cfg);
  try {
    saveEmailSettings(journal, cfg.dataDir, settings, password);
  } catch (err) {
    if (err instanceof EmailSettingsError || err instanceof EmailKeyError) throw new CliFailure(err.message, 1);
    throw err;
  } finally {
    journal.close();
  }
  io.stdout.write(
    `email alerts on: ${one(settings.recipients.length, 'recipient')}, at most one email every ${settings.minIntervalMinutes} min per camera; ` +
      'the password is stored encrypted on this device only. Try it: npm run agent -- email test\n',
  );
  return 0;
}

function configOnly(args: string[]): string | undefined {
  try {
    const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } }, strict: true, allowPositionals: false });
    return values.config;
  } catch (err) {
    throw argsError(err);
  }
}

async function test(args: string[], io: EmailCliIo): Promise<number> {
  const cfg = loadConfig(configOnly(args), io.env);
  if (!existsSync(join(cfg.dataDir, JOURNAL_FILE))) throw new CliFailure(`no agent journal in ${cfg.dataDir}: email alerts are not set up (run email set first)`, 1);
  const journal = openJournal(cfg);
  let creds;
  let clip: { path: string; durationMs: number } | undefined;
  try {
    creds = loadEmailCredentials(journal, cfg.dataDir);
    clip = journal.newestClipFiles().find((c) => existsSync(c.path));
  } catch (err) {
    if (err instanceof EmailKeyError || err instanceof EmailCryptoError || err instanceof EmailSettingsError) throw new CliFailure(err.message, 1);
    throw err;
  } finally {
    journal.close();
  }
  if (!creds) throw new CliFailure('email alerts are not set up: run email set first', 1);
  let snapshot: Buffer | undefined;
  let source = 'a generated test picture';
  try {
    if (clip) {
      snapshot = await grabSnapshot(cfg.ffmpegPath, clip.path, clip.durationMs / 2);
      source = 'a frame of the newest clip';
    } else {
      snapshot = await testPicture(cfg.ffmpegPath);
    }
  } catch (err) {
    io.stderr.write(`agent: email test: no picture (${(err as Error).message}); sending the email without one\n`);
    source = 'no picture';
    snapshot = undefined;
  }
  const now = new Date();
  try {
    const r = await sendAlertMail(
      creds,
      {
        subject: `camvault: test email from camera ${cfg.serial}`,
        text: `This is a test of the email alerts of camera ${cfg.serial}, sent at ${now.toISOString()}.\n\nAlerts will look like this, with a frame of the clip that recorded the motion.`,
        snapshot,
        snapshotName: `${cfg.serial}-test.jpg`,
      },
      { caFile: cfg.caFile },
    );
    io.stdout.write(
      `test email sent to ${one(r.accepted, 'recipient')}${r.rejected > 0 ? ` (${r.rejected} refused by the server)` : ''}, with ${source}` +
        `${r.responseCode !== undefined ? ` (SMTP ${r.responseCode})` : ''}\n`,
    );
    return 0;
  } catch (err) {
    if (err instanceof EmailSendError) throw new CliFailure(`sending failed: ${err.message}`, 1);
    throw err;
  }
}

function disable(args: string[], io: EmailCliIo): number {
  const cfg = loadConfig(configOnly(args), io.env);
  let erased = false;
  let checkpointed = true;
  let keyDeleted: boolean;
  if (existsSync(join(cfg.dataDir, JOURNAL_FILE))) {
    const journal = openJournal(cfg);
    try {
      ({ erased, checkpointed, keyDeleted } = eraseEmailSettings(journal, cfg.dataDir));
    } finally {
      journal.close();
    }
  } else {
    // no journal, so no row: a key file left from an earlier setup still goes
    keyDeleted = existsSync(cfg.dataDir) ? deleteEmailKey(cfg.dataDir) : false;
  }
  io.stdout.write(
    erased || keyDeleted
      ? 'email alerts off: the SMTP settings and password were erased from the journal, and the key file deleted\n'
      : 'email alerts were not set up: nothing to erase\n',
  );
  if (!checkpointed) {
    io.stderr.write(
      'agent: email disable: the journal\'s write-ahead log could not be truncated now (the running agent held it); the old pages go at its next checkpoint, and without the key they cannot be decrypted\n',
    );
  }
  return 0;
}

/** Runs `email <sub> …`; returns the exit code. Messages go to io.stderr as `agent: email <sub>: …`. */
export async function emailCommand(argv: string[], io: EmailCliIo): Promise<number> {
  const [sub, ...rest] = argv;
  const label = sub === 'set' || sub === 'test' || sub === 'disable' ? `email ${sub}` : 'email';
  try {
    if (argv.some((a) => PASSWORD_ARG.test(a))) throw new CliFailure(REFUSE_PASSWORD_ARG, 2);
    if (sub === 'set') return await set(rest, io);
    if (sub === 'test') return await test(rest, io);
    if (sub === 'disable') return disable(rest, io);
    throw new CliFailure(sub ? `unknown email command ${JSON.stringify(sub.slice(0, 20))}\n${EMAIL_USAGE}` : EMAIL_USAGE, 2);
  } catch (err) {
    if (err instanceof CliFailure) {
      io.stderr.write(`agent: ${label}: ${err.message}\n`);
      return err.exitCode;
    }
    // an unexpected error: its name only (a message could hold anything)
    io.stderr.write(`agent: ${label}: failed: ${(err as Error).name ?? 'error'}: ${(err as NodeJS.ErrnoException).code ?? ''}\n`);
    return 1;
  }
}
