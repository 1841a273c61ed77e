/**
 * HTTP/1.1 written by hand on a socket, for requests fetch refuses to send: a
 * body shorter than its Content-Length header, a connection cut mid-body.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

export interface RawRequest {
  method: string;
  headers: Record<string, string>;
  /** the bytes actually sent after the headers, whatever Content-Length says */
  body: Buffer;
  /** how long to wait for an answer after the body, then cut the connection */
  waitMs?: number;
}

export interface RawResponse {
  /** null when the connection ended without a status line */
  status: number | null;
  text: string;
}

export async function rawRequest(url: string, req: RawRequest): Promise<RawResponse> {
  const u = new URL(url);
  const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
  const socket: Socket =
    u.protocol === 'https:'
      ? tlsConnect({ host: u.hostname, port, servername: u.hostname })
      : netConnect({ host: u.hostname, port });
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve) => {
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('close', () => resolve());
    socket.on('error', () => resolve());
  });
  await new Promise<void>((resolve, reject) => {
    socket.once(u.protocol === 'https:' ? 'secureConnect' : 'connect', () => resolve());
    socket.once('error', reject);
  });
  const head =
    `${req.method} ${u.pathname}${u.search} HTTP/1.1\r\n` +
    `Host: ${u.host}\r\n` +
    Object.entries(req.headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('') +
    'Connection: close\r\n\r\n';
  socket.write(head);
  socket.write(req.body);
  // half-close: "no more bytes are coming"
  socket.end();
  const timer = setTimeout(() => socket.destroy(), req.waitMs ?? 3000);
  await done;
  clearTimeout(timer);
  const text = Buffer.concat(chunks).toString('latin1');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  return { status: m ? Number(m[1]) : null, text };
}
