import { mkdtemp, rm, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCloudConfig } from '../../cloud/config.js';
import { startServer } from '../../cloud/server.js';
import { startTestCloud, type TestCloud } from '../helpers/cloud.js';
import { runCloud } from '../helpers/run-cloud.js';

describe('the cloud server', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'camvault-server-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('listens on a free port, takes its public URL from the address, and closes once however often asked', async () => {
    const cloud: TestCloud = await startTestCloud();
    expect(cloud.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(await (await fetch(`${cloud.url}/healthz`)).json()).toEqual({ ok: true });
    await Promise.all([cloud.close(), cloud.close()]);
    await cloud.close();
    await expect(fetch(`${cloud.url}/healthz`)).rejects.toThrow();
  });

  it('finishes a request in flight while closing, and answers 503 SHUTTING_DOWN to the next', async () => {
    const cloud = await startTestCloud();
    const u = new URL(cloud.url);
    const sock = connect(Number(u.port), u.hostname);
    await new Promise((r) => sock.once('connect', r));
    let got = '';
    sock.on('data', (d: Buffer) => (got += d.toString()));
    const closed = new Promise((r) => sock.once('close', r));
    const body = JSON.stringify({ email: 'inflight@example.com', password: 'correct horse battery staple' });
    const first = `POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    sock.write(first.slice(0, -5));
    await new Promise((r) => setTimeout(r, 100));
    const closing = cloud.close();
    await new Promise((r) => setTimeout(r, 100));
    // the rest of the first request, and a second one pipelined behind it
    sock.write(`${first.slice(-5)}GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n`);
    await closing;
    await closed;
    const answers = got.split(/(?=HTTP\/1\.1 )/);
    expect(answers[0]).toMatch(/^HTTP\/1\.1 202/);
    expect(answers[1]).toMatch(/^HTTP\/1\.1 503/);
    expect(answers[1]).toContain('{"error":{"code":"SHUTTING_DOWN"');
  });

  it('a camera that stalls mid-upload does not hold the shutdown: its connection is cut after the grace period', async () => {
    // Without the cut, close() would wait for the body until the 120 s
    // connection timeout, past this test's own timeout.
    const cloud = await startTestCloud({ closeGraceMs: 300 });
    const key = 'accounts/stall/clip.mp4';
    const signed = await cloud.objects.presignPut(key, {
      contentLength: 1_000_000,
      contentMd5: 'AAAAAAAAAAAAAAAAAAAAAA==',
      expiresInSec: 60,
    });
    const u = new URL(signed.url);
    const sock = connect(Number(u.port), u.hostname);
    await new Promise((r) => sock.once('connect', r));
    sock.on('error', () => undefined);
    const closed = new Promise((r) => sock.once('close', r));
    const headers = Object.entries(signed.headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    sock.write(`PUT ${u.pathname}${u.search} HTTP/1.1\r\nHost: x\r\n${headers}\r\n` + 'x'.repeat(1000));
    await new Promise((r) => setTimeout(r, 200));
    expect(await cloud.objects.head(key)).toBeNull();
    await cloud.close();
    await closed;
    expect(sock.destroyed).toBe(true);
  }, 30_000);

  it('keeps signed URLs valid across a restart on the same data folder', async () => {
    const dataDir = join(dir, 'restart');
    const config = loadCloudConfig({ env: {}, overrides: { port: 0, dataDir, logLevel: 'silent' } });
    const a = await startServer(config);
    const url = new URL((await a.objects.presignGet('some/key.mp4', { expiresInSec: 300 })).url);
    await a.close();
    expect((await stat(join(dataDir, 'url-secret'))).mode & 0o777).toBe(0o600);
    const b = await startServer(config);
    const moved = new URL(url.pathname + url.search, b.url);
    const res = await fetch(moved);
    // signature accepted: the object is simply not there
    expect(res.status).toBe(404);
    expect((await res.json()).error.code).toBe('OBJECT_NOT_FOUND');
    await b.close();
  });

  it('takes a free port when asked to and the configured one is busy', async () => {
    const first = await startTestCloud();
    const port = Number(new URL(first.url).port);
    const config = loadCloudConfig({ env: {}, overrides: { port, dataDir: join(dir, 'fallback'), logLevel: 'silent' } });
    await expect(startServer(config)).rejects.toMatchObject({ code: 'EADDRINUSE' });
    const second = await startServer(config, { fallbackToFreePort: true });
    expect(Number(new URL(second.url).port)).not.toBe(port);
    await second.close();
    await first.close();
  });

  it('run directly, a configuration error prints one line and exits 1', async () => {
    const missing = await runCloud(['--config', join(dir, 'nope.json')], {});
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toMatch(/cannot read config file .*nope\.json: ENOENT/);
    const badPort = await runCloud([], { CAMVAULT_PORT: 'http' });
    expect(badPort.code).toBe(1);
    expect(badPort.stderr.trim()).toBe('camvault cloud: invalid config: CAMVAULT_PORT must be an integer, got a non-numeric value');
  });

  it('run directly, it logs where it listens and SIGTERM closes it cleanly', async () => {
    let sent = false;
    const run = await runCloud([], { CAMVAULT_PORT: '0', CAMVAULT_DATA_DIR: join(dir, 'direct') }, (out, kill) => {
      if (!sent && out.includes('camvault cloud listening on http://127.0.0.1:')) {
        sent = true;
        kill('SIGTERM');
      }
    });
    expect(sent).toBe(true);
    expect(run.code).toBe(0);
    expect(run.stderr).toBe('');
  });
});
