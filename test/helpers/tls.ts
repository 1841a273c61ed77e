/**
 * A throwaway PKI for HTTPS tests, made with the openssl CLI in a temp folder:
 * a CA, a server certificate it issued for 127.0.0.1 and localhost, one it
 * issued for another host name, and a self-signed one for 127.0.0.1 that no
 * CA vouches for. EC P-256 keys: a few milliseconds each, where RSA takes
 * tenths of a second.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface KeyPair {
  certFile: string;
  keyFile: string;
}

export interface TestPki {
  dir: string;
  /** the CA's certificate: what an agent's caFile names */
  caFile: string;
  /** issued by the CA for IP 127.0.0.1 and DNS localhost */
  server: KeyPair;
  /** issued by the same CA, for other.invalid only */
  otherHost: KeyPair;
  /** self-signed for 127.0.0.1, in no CA file */
  selfSigned: KeyPair;
  remove(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function issue(dir: string, name: string, subject: string, san: string): KeyPair {
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n`);
  openssl(['req', '-new', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject], dir);
  openssl(
    ['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-sha256', '-extfile', ext, '-out', `${name}.crt`],
    dir,
  );
  return { certFile: join(dir, `${name}.crt`), keyFile: join(dir, `${name}.key`) };
}

export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'camvault-pki-'));
  try {
    openssl(
      [
        'req', '-x509', ...EC, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-sha256', '-subj', '/CN=camvault test CA',
        '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      ],
      dir,
    );
    const server = issue(dir, 'server', '/CN=127.0.0.1', 'IP:127.0.0.1,DNS:localhost');
    const otherHost = issue(dir, 'other', '/CN=other.invalid', 'DNS:other.invalid');
    openssl(
      ['req', '-x509', ...EC, '-keyout', 'self.key', '-out', 'self.crt', '-days', '2', '-sha256', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
      dir,
    );
    return {
      dir,
      caFile: join(dir, 'ca.crt'),
      server,
      otherHost,
      selfSigned: { certFile: join(dir, 'self.crt'), keyFile: join(dir, 'self.key') },
      remove: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

export interface HttpsAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

/** One request over HTTPS trusting `caFile` (Node 20's fetch cannot take a CA). */
export function httpsCall(url: string, caFile: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method: opts.method ?? 'GET', headers: opts.headers, ca: readFileSync(caFile), agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

export interface TlsForwarder {
  /** plain http://127.0.0.1:port, forwarding every request to the https target */
  url: string;
  close(): Promise<void>;
}

/**
 * A plain-HTTP front for an HTTPS cloud, trusting `caFile`, so the helpers in
 * cloud.ts (global fetch) can sign up and bind against it. The agent under
 * test talks to the HTTPS address itself.
 */
export async function startTlsForwarder(target: string, caFile: string): Promise<TlsForwarder> {
  const ca = readFileSync(caFile);
  const base = new URL(target);
  const server = createServer((req, res) => {
    const headers = { ...req.headers, host: base.host };
    const out = httpsRequest(new URL(req.url ?? '/', base), { method: req.method, headers, ca, agent: false }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    out.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(out);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
