/**
 * `npm run bench -- accounts`: do the account routes take as long whether or
 * not the email has an account? (issue 5: "no account enumeration … in about
 * the same time"). Tests assert the answers are byte-identical; time is
 * measured here, as ratios of medians taken in the same run.
 *
 * - register_time_ratio_existing_vs_new: POST /v1/accounts for an address with
 *   a verified account (a notice is mailed) against a fresh address each time
 *   (an account is made and a code mailed).
 * - login_time_ratio_unknown_vs_wrong_password: POST /v1/sessions for an
 *   unknown address against a known one with a wrong password.
 * - reset_time_ratio_unknown_vs_known: POST /v1/accounts/password-reset.
 *
 * A real cloud on loopback (SQLite, development outbox, logs at info to
 * /dev/null, rate limits raised out of the way). Requests go one at a time,
 * the two kinds alternating (ABBA), after a warm-up of each kind, so a busy
 * moment of a shared machine falls on both alike. Target: every ratio within
 * [0.8, 1.25]. Prints one JSON line per figure; exits 1 when a ratio misses.
 * ACCOUNTS_BENCH_ROUNDS sets the calls per kind (default 40; resets 5×).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { loadCloudConfig } from '../cloud/config.js';
import type { DevOutbox } from '../cloud/mail/index.js';
import { startServer } from '../cloud/server.js';
import { createLogger } from '../shared/log.js';
import { figurePrinter, round } from './_figures.js';

const print = figurePrinter('accounts');
const ROUNDS = Number(process.env.ACCOUNTS_BENCH_ROUNDS ?? 40);
const LOW = 0.8;
const HIGH = 1.25;
const PASSWORD = 'correct horse battery staple';
const OPEN = { max: 1_000_000, windowSec: 3600 };

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

async function main(): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), 'camvault-bench-accounts-'));
  const config = loadCloudConfig({
    env: {},
    overrides: {
      host: '127.0.0.1',
      port: 0,
      dataDir,
      logLevel: 'info',
      rateLimits: {
        loginPerAccount: OPEN,
        loginPerIp: OPEN,
        mailPerEmail: OPEN,
        mailPerIp: OPEN,
        codePerIp: OPEN,
        claimPerIp: OPEN,
        claimPerSerial: OPEN,
      },
    },
  });
  const logger = createLogger({ name: 'cloud', level: 'info' }, pino.destination({ dest: '/dev/null', sync: false }));
  const server = await startServer(config, { logger });
  const outbox = server.mailer as DevOutbox;
  let failed = false;

  /** one request's time as the client sees it, from send to the last byte */
  const timed = async (path: string, body: unknown, expectStatus: number): Promise<number> => {
    const t0 = performance.now();
    const res = await fetch(server.url + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    const ms = performance.now() - t0;
    if (res.status !== expectStatus) throw new Error(`${path}: HTTP ${res.status} ${text}`);
    return ms;
  };

  /** medians of kind a and kind b, interleaved ABBA after 3 unmeasured calls of each */
  const compare = async (n: number, a: () => Promise<number>, b: () => Promise<number>): Promise<[number, number]> => {
    for (let i = 0; i < 3; i++) {
      await a();
      await b();
    }
    const ta: number[] = [];
    const tb: number[] = [];
    for (let i = 0; i < n; i++) {
      if (i % 2 === 0) {
        ta.push(await a());
        tb.push(await b());
      } else {
        tb.push(await b());
        ta.push(await a());
      }
    }
    return [median(ta), median(tb)];
  };

  const report = (figure: string, [a, b]: [number, number], names: [string, string]): void => {
    const ratio = a / b;
    const pass = ratio >= LOW && ratio <= HIGH;
    if (!pass) failed = true;
    print({ figure: `${figure}_median_ms_${names[0]}`, value: round(a, 2), unit: 'ms', target: null, pass: null, baseline_figure: `${figure}_median_ms_${names[1]}` });
    print({ figure: `${figure}_median_ms_${names[1]}`, value: round(b, 2), unit: 'ms', target: null, pass: null });
    print({ figure: `${figure}_time_ratio_${names[0]}_vs_${names[1]}`, value: round(ratio, 3), unit: 'ratio', target: HIGH, pass, range: [LOW, HIGH], samples: ROUNDS, baseline_figure: `${figure}_median_ms_${names[1]}` });
  };

  try {
    // one verified account: the "existing" and "known" side
    const known = `bench-${randomBytes(4).toString('hex')}@example.com`;
    const since = outbox.cursor;
    await timed('/v1/accounts', { email: known, password: PASSWORD }, 202);
    await timed('/v1/accounts/verify', { email: known, code: await outbox.waitForCode(known, since) }, 200);

    const fresh = (): string => `bench-${randomBytes(6).toString('hex')}@example.com`;
    report(
      'register',
      await compare(
        ROUNDS,
        () => timed('/v1/accounts', { email: known, password: PASSWORD }, 202),
        () => timed('/v1/accounts', { email: fresh(), password: PASSWORD }, 202),
      ),
      ['existing', 'new'],
    );
    report(
      'login',
      await compare(
        ROUNDS,
        () => timed('/v1/sessions', { email: fresh(), password: 'not the password' }, 401),
        () => timed('/v1/sessions', { email: known, password: 'not the password' }, 401),
      ),
      ['unknown', 'wrong_password'],
    );
    report(
      'reset',
      await compare(
        ROUNDS * 5,
        () => timed('/v1/accounts/password-reset', { email: fresh() }, 202),
        () => timed('/v1/accounts/password-reset', { email: known }, 202),
      ),
      ['unknown', 'known'],
    );
  } finally {
    await server.close();
    await rm(dataDir, { recursive: true, force: true });
  }
  process.exit(failed ? 1 : 0);
}

main().catch((err: unknown) => {
  console.error(`bench accounts failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
