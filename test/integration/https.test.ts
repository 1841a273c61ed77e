/**
 * Transport in production (P10): the cloud serves HTTPS from a certificate
 * and key, and the agent verifies the server's certificate (Node's bundled
 * roots plus its caFile) on every call, JSON and clip PUTs alike. A throwaway
 * CA is made with openssl for each run.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CloudClient, CloudError } from '../../agent/cloud-client.js';
import { AgentConfigError, loadAgentConfig } from '../../agent/config.js';
import { Journal } from '../../agent/journal/journal.js';
import { Uploader, type ClipUploaded, type UploadFailed } from '../../agent/uploader/uploader.js';
import { ConfigError, loadCloudConfig } from '../../cloud/config.js';
import { hashFile } from '../../shared/hash.js';
import { newClipId } from '../../shared/ids.js';
import { createLogger } from '../../shared/log.js';
import { api, createBindCode, mailedCode, outboxFor, randomSerial, setPlan, startTestCloud, type TestAccount, type TestCloud } from '../helpers/cloud.js';
import { waitFor } from '../helpers/media.js';
import { runCloud } from '../helpers/run-cloud.js';
import { httpsCall, makeTestPki, startTlsForwarder, type TestPki, type TlsForwarder } from '../helpers/tls.js';

let pki: TestPki;
let cloud: TestCloud;
/** plain-HTTP front of the HTTPS cloud, for the sign-up helpers (global fetch cannot take a CA) */
let front: TlsForwarder;
let acct: TestAccount;
let dir: string;

beforeAll(async () => {
  pki = makeTestPki();
  dir = mkdtempSync(join(tmpdir(), 'camvault-https-'));
  cloud = await startTestCloud({ tls: { certFile: pki.server.certFile, keyFile: pki.server.keyFile } });
  front = await startTlsForwarder(cloud.url, pki.caFile);
  acct = await signUpThrough(front.url);
  await setPlan(front.url, acct.token, 'standard');
});

afterAll(async () => {
  await front?.close();
  await cloud?.close();
  pki?.remove();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** registerAndLogin through the front: the mailed code is read from the cloud's outbox by its own URL */
async function signUpThrough(base: string): Promise<TestAccount> {
  const email = `tls-${randomBytes(6).toString('hex')}@example.com`;
  const password = 'correct horse battery staple';
  const since = outboxFor(cloud.url).cursor;
  expect((await api(base, 'POST', '/v1/accounts', { body: { email, password } })).status).toBeLessThan(300);
  const code = await mailedCode(cloud.url, email, since);
  expect((await api(base, 'POST', '/v1/accounts/verify', { body: { email, code } })).status).toBeLessThan(300);
  const login = await api(base, 'POST', '/v1/sessions', { body: { email, password } });
  expect(login.status).toBe(200);
  return { email, password, accountId: login.body.accountId, token: login.body.token };
}

async function clipFile(size = 200_000): Promise<{ path: string; id: string; startMs: number; size: number; md5: string; sha256: string }> {
  const startMs = Date.now() - 30_000;
  const id = newClipId(startMs);
  const path = join(dir, `${id}.mp4`);
  writeFileSync(path, randomBytes(size));
  const digest = await hashFile(path);
  return { path, id, startMs, ...digest };
}

async function rejection(p: Promise<unknown>): Promise<CloudError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(CloudError);
    return err as CloudError;
  }
  throw new Error('expected the call to be refused');
}

describe('the cloud over HTTPS', () => {
  it('listens on https://, signs object URLs with it and sends HSTS', async () => {
    expect(cloud.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const res = await httpsCall(`${cloud.url}/v1/plans`, pki.caFile);
    expect(res.status).toBe(200);
    expect(res.headers['strict-transport-security']).toMatch(/max-age=\d+/);
  });

  it('(a) with the CA file, claim, presign, PUT and complete all succeed over TLS', async () => {
    const client = new CloudClient({ baseUrl: cloud.url, caFile: pki.caFile, timeoutMs: 5000 });
    const serial = randomSerial('TLS');
    const claimed = await client.claim({ serial, model: 'SIM-TLS', bindCode: await createBindCode(front.url, acct.token) });
    expect(claimed.serial).toBe(serial);
    client.setDeviceCredentials(serial, claimed.deviceToken);

    const clip = await clipFile();
    const presigned = await client.presign({
      clipId: clip.id,
      start: new Date(clip.startMs).toISOString(),
      durationMs: 10_000,
      size: clip.size,
      md5: clip.md5,
      sha256: clip.sha256,
      kind: 'event',
    });
    if (presigned.mode !== 'single') throw new Error('expected a single PUT for a small clip');
    // the local store's signed URL is built on the https public URL
    expect(presigned.url.startsWith(`${cloud.url}/objects/`)).toBe(true);
    const put = await client.streamPut(presigned, clip.path);
    expect(put).toMatchObject({ ok: true, status: 200 });
    const done = await client.complete(clip.id);
    expect(done.clip).toMatchObject({ id: clip.id, serial, size: clip.size, sha256: clip.sha256 });
    const head = await cloud.objects.head((await cloud.store.getClip(clip.id))!.key);
    expect(head?.size).toBe(clip.size);
    // and the viewer's signed GET is https too
    const view = await api(front.url, 'GET', `/v1/clips/${clip.id}/view`, { token: acct.token });
    expect(view.body.url.startsWith(`${cloud.url}/objects/`)).toBe(true);
    const got = await httpsCall(view.body.url, pki.caFile);
    expect(got.status).toBe(200);
    expect(Number(got.headers['content-length'])).toBe(clip.size);
  });

  it('(b) without the CA file every call is refused as TLS_CERT_INVALID, nothing is uploaded, and the uploader backs off', async () => {
    const trusting = new CloudClient({ baseUrl: cloud.url, caFile: pki.caFile, timeoutMs: 5000 });
    const serial = randomSerial('TLS');
    const bindCode = await createBindCode(front.url, acct.token);

    const untrusting = new CloudClient({ baseUrl: cloud.url, timeoutMs: 5000 });
    const refused = await rejection(untrusting.claim({ serial, model: 'SIM-TLS', bindCode }));
    expect(refused).toMatchObject({ status: 0, code: 'TLS_CERT_INVALID' });
    expect(refused.message).toMatch(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/);
    expect(refused.message).not.toContain(bindCode);
    // a client given a fetch (Node's, which cannot take a CA) maps the refusal the same way
    const viaFetch = await rejection(new CloudClient({ baseUrl: cloud.url, fetch: globalThis.fetch, timeoutMs: 5000 }).claim({ serial, model: 'SIM-TLS', bindCode }));
    expect(viaFetch).toMatchObject({ status: 0, code: 'TLS_CERT_INVALID' });
    // nothing reached the cloud: the same bind code still claims
    const claimed = await trusting.claim({ serial, model: 'SIM-TLS', bindCode });

    // the agent's upload path (journal, uploader, client) without the CA
    const journalDir = mkdtempSync(join(dir, 'journal-'));
    const journal = Journal.open(journalDir);
    const lines: string[] = [];
    const logger = createLogger({ level: 'debug' }, { write: (s: string) => lines.push(s) });
    untrusting.setDeviceCredentials(serial, claimed.deviceToken);
    const clip = await clipFile();
    journal.addClip({ id: clip.id, channel: 'main', path: clip.path, startMs: clip.startMs, durationMs: 10_000, kind: 'continuous', size: clip.size, md5: clip.md5, sha256: clip.sha256 });
    const sleeps: number[] = [];
    const failed: UploadFailed[] = [];
    const uploaded: ClipUploaded[] = [];
    const uploader = new Uploader({
      journal,
      api: untrusting,
      serial,
      logger,
      concurrency: 1,
      policy: { maxRetries: 2, minDelayMs: 1000, factor: 2, jitter: 0, parkMs: 60_000 },
      sleep: async (ms) => {
        sleeps.push(ms);
      },
    });
    uploader.on('upload-failed', (e: UploadFailed) => failed.push(e));
    uploader.on('clip-uploaded', (e: ClipUploaded) => uploaded.push(e));
    try {
      uploader.start();
      await waitFor(() => failed.length >= 3, 10_000, 'three refused attempts');
    } finally {
      await uploader.stop({ graceMs: 100 });
    }
    expect(failed.map((f) => f.code)).toEqual(['TLS_CERT_INVALID', 'TLS_CERT_INVALID', 'TLS_CERT_INVALID']);
    // retried with a growing wait, then left in the queue for parkMs: no hot loop, no crash
    expect(failed.map((f) => f.next)).toEqual(['retry', 'retry', 'queued']);
    expect(sleeps).toEqual([1000, 2000]);
    expect(uploaded).toEqual([]);
    expect(journal.getClip(clip.id)).toMatchObject({ state: 'queued', lastErrorCode: 'TLS_CERT_INVALID' });
    journal.close();
    expect(await cloud.store.getUpload(clip.id)).toBeNull();
    expect(await cloud.store.getClip(clip.id)).toBeNull();
    const log = lines.join('');
    expect(log).toContain('TLS_CERT_INVALID');
    expect(log).not.toContain(claimed.deviceToken);
    expect(log).not.toContain('X-Camvault-Signature');
  });

  it('(c) a certificate for another host name, or a self-signed one, is refused even with the CA file, on JSON calls and PUTs', async () => {
    const other = await startTestCloud({ tls: pki.otherHost });
    const self = await startTestCloud({ tls: pki.selfSigned });
    try {
      for (const [target, expected] of [
        [other, /ERR_TLS_CERT_ALTNAME_INVALID/],
        [self, /DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED/],
      ] as const) {
        const client = new CloudClient({ baseUrl: target.url, caFile: pki.caFile, timeoutMs: 5000 });
        const refused = await rejection(client.claim({ serial: randomSerial('TLS'), model: 'SIM-TLS', bindCode: 'ABCDEFGHJK' }));
        expect(refused).toMatchObject({ status: 0, code: 'TLS_CERT_INVALID' });
        expect(refused.message).toMatch(expected);
        // the PUT path (node:https with the same agent) maps it the same way
        const clip = await clipFile(1000);
        const put = await rejection(
          client.streamPut({ url: `${target.url}/objects/accounts/x/${clip.id}.mp4?sig=secret-signature`, headers: { 'content-length': String(clip.size), 'content-md5': clip.md5 } }, clip.path),
        );
        expect(put).toMatchObject({ status: 0, code: 'TLS_CERT_INVALID' });
        expect(put.message).not.toContain('secret-signature');
      }
    } finally {
      await other.close();
      await self.close();
    }
  });
});

describe('configuration of TLS', () => {
  const good = { serial: 'SIM00000001', cloudUrl: 'https://cloud.example.com', input: 'rtsp://cam/stream' };

  function agentConfigError(fn: () => unknown): string {
    try {
      fn();
    } catch (err) {
      expect(err).toBeInstanceOf(AgentConfigError);
      expect((err as Error).message).not.toContain('\n');
      return (err as Error).message;
    }
    throw new Error('expected a config error');
  }

  it('(d) the agent refuses http:// unless development is true, and checks its CA file', () => {
    expect(agentConfigError(() => loadAgentConfig({ env: {}, overrides: { ...good, cloudUrl: 'http://cloud.example.com' } }))).toMatch(/cloudUrl: must be https/);
    expect(loadAgentConfig({ env: {}, overrides: { ...good, cloudUrl: 'http://127.0.0.1:8080', development: true } }).cloudUrl).toBe('http://127.0.0.1:8080');
    expect(loadAgentConfig({ env: { CAMVAULT_AGENT_CA_FILE: pki.caFile }, overrides: good }).caFile).toBe(pki.caFile);
    expect(agentConfigError(() => loadAgentConfig({ env: { CAMVAULT_AGENT_CA_FILE: join(dir, 'none.pem') }, overrides: good }))).toMatch(
      /^invalid agent config: caFile: cannot read .*none\.pem: ENOENT \(from CAMVAULT_AGENT_CA_FILE\)$/,
    );
    const garbage = join(dir, 'garbage.pem');
    writeFileSync(garbage, 'not a certificate\n');
    expect(agentConfigError(() => loadAgentConfig({ env: {}, overrides: { ...good, caFile: garbage } }))).toMatch(/caFile: .*holds no PEM certificate/);
    // a key is not a CA
    expect(agentConfigError(() => loadAgentConfig({ env: {}, overrides: { ...good, caFile: pki.server.keyFile } }))).toMatch(/holds no PEM certificate/);
  });

  it('the cloud takes a certificate and a key together or not at all, in one clear line', () => {
    for (const env of [{ CAMVAULT_TLS_CERT_FILE: pki.server.certFile }, { CAMVAULT_TLS_KEY_FILE: pki.server.keyFile }]) {
      let err: unknown;
      try {
        loadCloudConfig({ env });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(/^invalid config: tls: set both the certificate and the key/);
    }
    const both = loadCloudConfig({ env: { CAMVAULT_TLS_CERT_FILE: pki.server.certFile, CAMVAULT_TLS_KEY_FILE: pki.server.keyFile } });
    expect(both.tls).toEqual({ certFile: pki.server.certFile, keyFile: pki.server.keyFile });
  });

  it('a certificate or key that cannot be read or used stops the cloud with one line and exit code 1', async () => {
    await expect(startTestCloud({ tls: { certFile: join(dir, 'missing.crt'), keyFile: pki.server.keyFile } })).rejects.toThrow(
      /^TLS certificate file .*missing\.crt cannot be read: ENOENT$/,
    );
    // a key that belongs to another certificate
    await expect(startTestCloud({ tls: { certFile: pki.server.certFile, keyFile: pki.otherHost.keyFile } })).rejects.toThrow(/cannot be used: .*mismatch/i);
    const run = await runCloud([], {
      CAMVAULT_PORT: '0',
      CAMVAULT_DATA_DIR: join(dir, 'cli'),
      CAMVAULT_TLS_CERT_FILE: pki.server.certFile,
      CAMVAULT_TLS_KEY_FILE: join(dir, 'missing.key'),
    });
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toMatch(/^camvault cloud: cannot start: TLS key file .*missing\.key cannot be read: ENOENT$/);
    // the key file's contents never appear
    expect(run.stderr).not.toContain('PRIVATE KEY');
  });
});
