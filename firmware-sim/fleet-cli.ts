/**
 * `npm run sim -- fleet …`: the command line of fleet mode (firmware-sim/fleet.ts).
 *
 * Bind codes come from the account itself (--email and --password, or
 * CAMVAULT_FLEET_PASSWORD so the password stays out of `ps`: one code per
 * device through POST /v1/devices/bind-codes; the plan must allow that many
 * cameras) or from a file of codes, one a line, of any accounts.
 *
 * Progress goes to stdout every few seconds, the closing table after the run.
 * Exit code 0 when no request failed, 1 when one did, 2 for a usage error.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { SERIAL_RE } from '../shared/ids.js';
import { FleetHttp } from './fleet-http.js';
import { formatFleetTable, parseDuration } from './fleet-stats.js';
import { runFleet, type FleetDeviceSpec } from './fleet.js';

export const FLEET_USAGE =
  'usage: npm run sim -- fleet --devices N --cloud URL [--clip-bytes 1000000] [--every 10s] [--alerts-every 30s] [--duration 60s]\n' +
  '         (--email EMAIL --password PASSWORD | --bind-codes-file FILE) [--serial-prefix FLEET] [--model SIM-FLEET]\n' +
  '         [--claim-concurrency 32] [--max-sockets N] [--timeout 30s] [--progress-every 5s]\n' +
  '       the password may come from CAMVAULT_FLEET_PASSWORD instead; without --duration the fleet runs until Ctrl-C';

class UsageError extends Error {}

function intArg(name: string, v: string | undefined, fallback: number, min: number, max: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return n;
}

function durationArg(name: string, v: string | undefined, fallback: number | undefined, minMs: number): number | undefined {
  if (v === undefined) return fallback;
  const ms = parseDuration(v);
  if (ms === null || ms < minMs) throw new UsageError(`--${name} must be a duration of at least ${minMs} ms (500ms, 10s, 2m, 1h), got ${JSON.stringify(v)}`);
  return ms;
}

/** `prefix` + the device's index, zero-padded; checked against the serial rule */
export function fleetSerials(prefix: string, count: number): string[] {
  const width = Math.max(6, String(count - 1).length);
  const serials = Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(width, '0')}`);
  if (!serials.every((s) => SERIAL_RE.test(s))) {
    throw new UsageError(`--serial-prefix ${JSON.stringify(prefix)} makes serials like ${serials[0]}, which are not 8-32 characters A-Z 0-9`);
  }
  return serials;
}

/** N bind codes of the account: log in, then one POST /v1/devices/bind-codes per device. */
async function bindCodesOfAccount(cloud: string, email: string, password: string, count: number): Promise<string[]> {
  const http = new FleetHttp({ maxSockets: 16, timeoutMs: 30_000 });
  try {
    const login = await http.json('POST', `${cloud}/v1/sessions`, { email, password });
    if (!login.ok) throw new Error(`login failed: ${login.code}${login.code === 'NETWORK' || login.code === 'TIMEOUT' ? ` (no answer from ${cloud})` : ''}`);
    const auth = `Bearer ${(login.body as { token: string }).token}`;
    const codes: string[] = [];
    let failure: string | undefined;
    const worker = async (): Promise<void> => {
      while (codes.length < count && failure === undefined) {
        const r = await http.json('POST', `${cloud}/v1/devices/bind-codes`, {}, auth);
        if (!r.ok) failure = r.code;
        else if (codes.length < count) codes.push((r.body as { code: string }).code);
      }
    };
    await Promise.all(Array.from({ length: Math.min(16, count) }, worker));
    if (failure !== undefined) throw new Error(`making bind codes failed: ${failure}`);
    return codes;
  } finally {
    http.close();
  }
}

function bindCodesFromFile(file: string, count: number): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read --bind-codes-file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  const codes = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  if (codes.length < count) throw new UsageError(`--bind-codes-file ${file} holds ${codes.length} codes for ${count} devices`);
  return codes.slice(0, count);
}

/** Runs fleet mode with the arguments after `fleet`; resolves with the exit code. */
export async function fleetMain(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        devices: { type: 'string' },
        cloud: { type: 'string' },
        'clip-bytes': { type: 'string' },
        every: { type: 'string' },
        'alerts-every': { type: 'string' },
        duration: { type: 'string' },
        email: { type: 'string' },
        password: { type: 'string' },
        'bind-codes-file': { type: 'string' },
        'serial-prefix': { type: 'string' },
        model: { type: 'string' },
        'claim-concurrency': { type: 'string' },
        'max-sockets': { type: 'string' },
        timeout: { type: 'string' },
        'progress-every': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    console.error(`sim fleet: ${(err as Error).message}\n${FLEET_USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(FLEET_USAGE);
    return 0;
  }
  const controller = new AbortController();
  let interrupted = 0;
  const onSignal = (): void => {
    // the first Ctrl-C ends the run (uploads under way finish, the table prints); the second ends the process
    if (++interrupted > 1) process.exit(130);
    console.error('sim fleet: stopping; Ctrl-C again to quit at once');
    controller.abort();
  };
  try {
    if (!values.cloud) throw new UsageError('--cloud URL is required');
    const cloud = values.cloud.replace(/\/+$/, '');
    if (!/^https?:\/\/[^/]+/.test(cloud)) throw new UsageError('--cloud must be an http:// or https:// URL');
    const devices = intArg('devices', values.devices, 0, 1, 100_000);
    if (devices === 0) throw new UsageError('--devices N is required');
    const clipBytes = intArg('clip-bytes', values['clip-bytes'], 1_000_000, 1, 5 * 1024 ** 3);
    const everyMs = durationArg('every', values.every, 10_000, 100) as number;
    const alertsEveryMs = durationArg('alerts-every', values['alerts-every'], 0, 100) ?? 0;
    const durationMs = durationArg('duration', values.duration, undefined, 1);
    const timeoutMs = durationArg('timeout', values.timeout, 30_000, 100) as number;
    const progressEveryMs = durationArg('progress-every', values['progress-every'], 5000, 100) as number;
    const claimConcurrency = intArg('claim-concurrency', values['claim-concurrency'], 32, 1, 1000);
    const maxSockets = values['max-sockets'] === undefined ? undefined : intArg('max-sockets', values['max-sockets'], 0, 1, 100_000);
    const prefix = values['serial-prefix'] ?? `FL${randomBytes(3).toString('hex').toUpperCase()}`;
    const serials = fleetSerials(prefix, devices);

    const password = values.password ?? env.CAMVAULT_FLEET_PASSWORD;
    let codes: string[];
    if (values['bind-codes-file']) {
      if (values.email) throw new UsageError('give --email or --bind-codes-file, not both');
      codes = bindCodesFromFile(values['bind-codes-file'], devices);
    } else {
      if (!values.email || !password) throw new UsageError('give --email and --password (or CAMVAULT_FLEET_PASSWORD), or --bind-codes-file');
      console.log(`sim fleet: making ${devices} bind codes`);
      codes = await bindCodesOfAccount(cloud, values.email, password, devices);
    }
    const specs: FleetDeviceSpec[] = serials.map((serial, i) => ({ serial, bindCode: codes[i] as string }));

    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    console.log(
      `sim fleet: ${devices} devices (${serials[0]}…), a ${clipBytes}-byte clip every ${everyMs / 1000} s each` +
        (alertsEveryMs ? `, an alert every ${alertsEveryMs / 1000} s` : '') +
        (durationMs === undefined ? ', until Ctrl-C' : `, for ${durationMs / 1000} s`),
    );
    const { summary } = await runFleet({
      cloudUrl: cloud,
      devices: specs,
      clipBytes,
      everyMs,
      alertsEveryMs,
      durationMs,
      timeoutMs,
      progressEveryMs,
      claimConcurrency,
      maxSockets,
      model: values.model,
      signal: controller.signal,
      onProgress: (line) => console.log(line),
      onNotice: (line) => console.error(`sim fleet: ${line}`),
    });
    console.log(`\n${formatFleetTable(summary)}`);
    return summary.errors === 0 ? 0 : 1;
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`sim fleet: ${err.message}\n${FLEET_USAGE}`);
      return 2;
    }
    console.error(`sim fleet: ${(err as Error).message}`);
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
