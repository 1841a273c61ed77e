/**
 * The simulator's network fault (firmware-sim/faults/fault-proxy.ts) against
 * a real HTTP server on 127.0.0.1 port 0: each mode does to a request what it
 * says, a switch cuts what it says, and presigned upload URLs that point at
 * the cloud are pointed at the proxy. What the agent does about each mode is
 * sim-faults.test.ts.
 */
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FaultProxy, type ProxiedRequest } from '../../firmware-sim/faults/fault-proxy.js';
import { ErrorResponse } from '../../shared/contracts/common.js';
import { waitFor } from '../helpers/media.js';

let upstream: Server;
let origin: string;
/** what reached the upstream: method, path and body */
const seen: { method: string; path: string; body: string }[] = [];
/** paths the upstream holds before answering, until released */
const held = new Map<string, () => void>();

beforeAll(async () => {
  upstream = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '/';
      seen.push({ method: req.method ?? '', path, body: Buffer.concat(chunks).toString('utf8') });
      const answer = (): void => {
        if (path === '/v1/device/uploads') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ mode: 'single', method: 'PUT', url: `${origin}/objects/k?sig=abc`, headers: {}, other: 'https://s3.example.com/b/k?x=1' }));
          return;
        }
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`ok ${req.method} ${path}`);
      };
      if (path.startsWith('/hold')) held.set(path, answer);
      else answer();
    });
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
});

afterAll(async () => {
  upstream.closeAllConnections();
  await new Promise<void>((resolve) => upstream.close(() => resolve()));
});

let proxy: FaultProxy;
afterEach(async () => {
  await proxy?.close();
  seen.length = 0;
  held.clear();
});

/** One request with node:http (fetch pools sockets across tests). Resolves with the status and body, or rejects with the socket error. */
function send(url: string, opts: { method?: string; body?: string; timeoutMs?: number } = {}): Promise<{ status: number; body: string; headers: IncomingMessage['headers'] }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', agent: false, headers: opts.body ? { 'content-type': 'application/json' } : {} });
    if (opts.timeoutMs) req.setTimeout(opts.timeoutMs, () => req.destroy(new Error('no answer in time')));
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
      res.on('error', reject);
    });
    req.end(opts.body);
  });
}

describe('the fault proxy between an agent and the cloud', () => {
  it('forward passes requests and bodies through, and says what each request was', async () => {
    proxy = await FaultProxy.start({ target: origin });
    const done: ProxiedRequest[] = [];
    proxy.on('request', (r: ProxiedRequest) => done.push(r));
    expect(await send(`${proxy.url}/v1/clips?x=1`)).toMatchObject({ status: 200, body: 'ok GET /v1/clips?x=1' });
    const put = await send(`${proxy.url}/objects/k?sig=abc`, { method: 'PUT', body: 'clip bytes' });
    expect(put.status).toBe(200);
    expect(seen.map((s) => [s.method, s.path, s.body])).toEqual([
      ['GET', '/v1/clips?x=1', ''],
      ['PUT', '/objects/k?sig=abc', 'clip bytes'],
    ]);
    await waitFor(() => done.length === 2, 2000, 'both requests reported');
    // the query (a presigned URL's signature) is never reported
    expect(done.map((r) => [r.kind, r.path, r.status, r.mode])).toEqual([
      ['other', '/v1/clips', 200, 'forward'],
      ['put', '/objects/k', 200, 'forward'],
    ]);
  });

  it('refuse resets each connection: nothing reaches the cloud', async () => {
    proxy = await FaultProxy.start({ target: origin });
    proxy.setMode('refuse');
    await expect(send(`${proxy.url}/v1/clips`)).rejects.toThrow(/ECONNRESET|socket hang up/);
    expect(proxy.counts.refused).toBe(1);
    expect(seen).toEqual([]);
    proxy.setMode('forward');
    expect((await send(`${proxy.url}/v1/clips`)).status).toBe(200);
  });

  it('blackhole takes connections and never answers; leaving it cuts them', async () => {
    proxy = await FaultProxy.start({ target: origin });
    proxy.setMode('blackhole');
    const pending = send(`${proxy.url}/v1/clips`, { method: 'POST', body: '{}' });
    await waitFor(() => proxy.counts.blackholed === 1, 2000, 'the connection parked');
    let settled = false;
    void pending.then(
      () => (settled = true),
      () => (settled = true),
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(settled).toBe(false);
    proxy.setMode('forward');
    await expect(pending).rejects.toThrow(/socket hang up|ECONNRESET/);
    expect(seen).toEqual([]);
  });

  it('http5xx answers the status with a catalogue-shaped body and Retry-After, without asking the cloud', async () => {
    proxy = await FaultProxy.start({ target: origin });
    proxy.setMode('http5xx', { status: 502, retryAfterSec: 7 });
    const r = await send(`${proxy.url}/v1/device/uploads`, { method: 'POST', body: '{"clipId":"x"}' });
    expect(r.status).toBe(502);
    expect(r.headers['retry-after']).toBe('7');
    expect(ErrorResponse.parse(JSON.parse(r.body)).error.code).toBe('INTERNAL');
    proxy.setMode('http5xx');
    const d = await send(`${proxy.url}/v1/clips`);
    expect(d.status).toBe(503);
    expect(ErrorResponse.parse(JSON.parse(d.body)).error.code).toBe('SHUTTING_DOWN');
    expect(proxy.counts.answered5xx).toBe(2);
    expect(seen).toEqual([]);
  });

  it('a switch to an outage cuts a request in flight, as a dead link does', async () => {
    proxy = await FaultProxy.start({ target: origin });
    const pending = send(`${proxy.url}/hold/1`);
    await waitFor(() => held.has('/hold/1'), 2000, 'the request upstream');
    proxy.setMode('refuse');
    await expect(pending).rejects.toThrow(/socket hang up|ECONNRESET/);
  });

  it('slow: a request the client gives up on still reaches the cloud, whose answer is lost', async () => {
    proxy = await FaultProxy.start({ target: origin });
    const done: ProxiedRequest[] = [];
    proxy.on('request', (r: ProxiedRequest) => done.push(r));
    // half the latency before the request goes up, half before the answer comes back
    proxy.setMode('slow', { latencyMs: 1600 });
    await expect(send(`${proxy.url}/v1/device/uploads/01ABC/complete`, { method: 'POST', body: '{}', timeoutMs: 1200 })).rejects.toThrow('no answer in time');
    expect(seen.map((s) => s.path)).toEqual(['/v1/device/uploads/01ABC/complete']);
    await waitFor(() => done.length === 1, 3000, 'the request reported');
    expect(done[0]).toMatchObject({ kind: 'complete', status: null, mode: 'slow' });
    // leaving slow changes nothing for the requests that follow but their speed
    proxy.setMode('forward');
    expect((await send(`${proxy.url}/v1/clips`)).status).toBe(200);
  });

  it('points upload URLs of a presign answer on the cloud at the proxy, and leaves other hosts alone', async () => {
    proxy = await FaultProxy.start({ target: origin });
    const r = await send(`${proxy.url}/v1/device/uploads`, { method: 'POST', body: '{}' });
    const body = JSON.parse(r.body) as { url: string; other: string };
    expect(body.url).toBe(`${proxy.url}/objects/k?sig=abc`);
    expect(body.other).toBe('https://s3.example.com/b/k?x=1');
    expect(Number(r.headers['content-length'])).toBe(Buffer.byteLength(r.body));
    // and the rewritten URL reaches the cloud unchanged
    expect((await send(body.url, { method: 'PUT', body: 'x' })).status).toBe(200);
    expect(seen.at(-1)).toMatchObject({ method: 'PUT', path: '/objects/k?sig=abc' });
  });

  it('refuses an https target, which it could not read', async () => {
    await expect(FaultProxy.start({ target: 'https://cloud.example.com' })).rejects.toThrow(/plain http/);
  });
});
