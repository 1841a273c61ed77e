/**
 * `npm run demo`: the whole system on one machine, on embedded defaults.
 * A cloud (SQLite + local object store), a simulated camera streaming H.264, and
 * an agent recording 10-second segments and uploading each one. Prints the cloud
 * URL, a demo login, one line per uploaded clip and ready-to-paste curl commands.
 * Ctrl-C stops everything; no ffmpeg is left running.
 */
import { rm, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { loadCloudConfig } from '../cloud/config.js';
import { DevOutbox, type OutboxMail } from '../cloud/mail/index.js';
import { startServer } from '../cloud/server.js';
import { SimCamera } from '../firmware-sim/camera.js';
import { Agent } from '../agent/agent.js';
import { loadAgentConfig } from '../agent/config.js';
import { createLogger } from '../shared/log.js';

const SERIAL = 'SIM00000001';
const dataRoot = resolve(process.env.CAMVAULT_DEMO_DIR ?? '.data/demo');
const quiet = createLogger({ level: process.env.CAMVAULT_LOG_LEVEL ?? 'warn' });

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

async function api<T>(base: string, method: string, path: string, body?: unknown, token?: string): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path} → ${res.status} ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

async function main(): Promise<void> {
  // The demo starts from a clean slate each time: its own folder, nothing else.
  await rm(dataRoot, { recursive: true, force: true });
  await mkdir(dataRoot, { recursive: true });

  const cloudConfig = loadCloudConfig({
    env: { ...process.env, CAMVAULT_DATA_DIR: join(dataRoot, 'cloud'), CAMVAULT_PORT: process.env.CAMVAULT_PORT ?? '8080' },
  });
  // If the usual port is taken, take a free one.
  const server = await startServer(cloudConfig, { logger: quiet, fallbackToFreePort: true });
  const url = server.url;

  const stops: (() => Promise<void>)[] = [() => server.close()];
  let stopping = false;
  const shutdown = async (why: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${why}: stopping the agent, the camera and the cloud…`);
    for (const stop of stops.reverse()) {
      await stop().catch((err: unknown) => console.error('stop failed:', err));
    }
    console.log('stopped.');
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('Ctrl-C'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));

  console.log(`camvault cloud listening on ${url}`);
  // The embedded default for the cloud's own mail is an in-memory outbox; the
  // demo prints what lands in it (verification and reset codes included).
  const outbox = server.mailer instanceof DevOutbox ? server.mailer : undefined;
  outbox?.on('mail', (m: OutboxMail) => {
    console.log(`\n--- mail to ${m.to}: ${m.subject}\n${m.text.replace(/^/gm, '  ')}\n---\n`);
  });

  const email = 'demo@camvault.local';
  const password = randomBytes(9).toString('base64url');
  if (!outbox) throw new Error('the demo reads its verification code from the development outbox: unset CAMVAULT_SMTP_URL');
  const since = outbox.cursor;
  await api(url, 'POST', '/v1/accounts', { email, password });
  await api(url, 'POST', '/v1/accounts/verify', { email, code: await outbox.waitForCode(email, since) });
  const session = await api<{ token: string }>(url, 'POST', '/v1/sessions', { email, password });
  await api(url, 'PUT', '/v1/account/plan', { plan: 'standard' }, session.token);
  const bind = await api<{ code: string }>(url, 'POST', '/v1/devices/bind-codes', {}, session.token);
  console.log(`demo account: ${email}  password: ${password}  (plan: standard)`);

  const camera = await SimCamera.start({ serial: SERIAL, width: 1280, height: 720, fps: 15, motionEverySec: 25, logger: quiet });
  stops.push(() => camera.stop());
  console.log(`simulated camera ${SERIAL} streaming on ${camera.streamUrl}`);

  const agentConfig = loadAgentConfig({
    env: process.env,
    overrides: {
      serial: SERIAL,
      cloudUrl: url,
      input: camera.streamUrl,
      eventsUrl: camera.eventsUrl,
      dataDir: join(dataRoot, 'agent'),
      segmentSeconds: 10,
      bindCode: bind.code,
      development: true,
    },
  });
  const agent = await Agent.start({ config: agentConfig, logger: quiet });
  stops.push(() => agent.stop());
  console.log(`agent recording ${agentConfig.segmentSeconds}-second segments; the first clip lands in about ${agentConfig.segmentSeconds + 2} s`);

  let first = true;
  agent.on('clip-uploaded', (e: { clipId: string; serial: string; kind: string; durationMs: number; size: number; uploadMs: number }) => {
    console.log(
      `clip ${e.clipId} cam ${e.serial} ${(e.durationMs / 1000).toFixed(1)} s ${mb(e.size)} ${e.kind} uploaded in ${(e.uploadMs / 1000).toFixed(1)} s`,
    );
    if (first) {
      first = false;
      console.log('\nTry it (session token of the demo account):');
      console.log(`  curl -s -H 'Authorization: Bearer ${session.token}' '${url}/v1/clips'`);
      console.log(`  curl -sL -H 'Authorization: Bearer ${session.token}' '${url}/v1/clips/${e.clipId}/download' -o ${e.clipId}.mp4`);
      console.log('Ctrl-C stops everything.\n');
    }
  });
  agent.on('upload-failed', (e: { clipId: string; code?: string }) => {
    console.log(`clip ${e.clipId} upload failed: ${e.code ?? 'network error'} (will retry)`);
  });
}

main().catch((err: unknown) => {
  console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
