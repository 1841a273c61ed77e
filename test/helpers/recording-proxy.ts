/**
 * What a device sends, recorded, for privacy proofs (issue 7, DESIGN P4):
 *
 * - RecordingProxy: the TCP proxy (tcp-proxy.ts) on 127.0.0.1 port 0 in
 *   front of the cloud, forwarding every connection and keeping every byte
 *   in both directions.
 *   At the TCP level, so nothing escapes it: request lines, headers, bodies
 *   (JSON and clip PUTs), chunked framing, and any protocol besides HTTP.
 *   The cloud must sign URLs for the proxy (publicUrl), so presigned PUTs
 *   cross it too.
 * - startRecordingSmtp: a real SMTP server (smtp-server) that takes mail only
 *   from one user and password and keeps every authentication and message.
 * - secretForms / findSecret: a secret as it could appear in captured bytes:
 *   plain, URL-encoded (either hex case, form style), JSON-escaped, and
 *   base64 / base64url at each of the three byte alignments it can sit at
 *   inside a longer encoded run.
 */
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerAuthentication, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { TcpProxy } from './tcp-proxy.js';

export interface RecordedConnection {
  id: number;
  /** client → upstream */
  sent: Buffer[];
  /** upstream → client */
  received: Buffer[];
}

/**
 * The TCP proxy (tcp-proxy.ts), always forwarding, with a tap that keeps a
 * copy of every chunk of every connection.
 */
export class RecordingProxy {
  private constructor(
    private readonly proxy: TcpProxy,
    readonly connections: RecordedConnection[],
  ) {}

  static async start(target?: { host: string; port: number }): Promise<RecordingProxy> {
    const connections: RecordedConnection[] = [];
    const proxy = await TcpProxy.start(target, () => {
      const rec: RecordedConnection = { id: connections.length + 1, sent: [], received: [] };
      connections.push(rec);
      // copies: the chunks are handed on upstream or to the client
      return { sent: (b) => rec.sent.push(Buffer.from(b)), received: (b) => rec.received.push(Buffer.from(b)) };
    });
    return new RecordingProxy(proxy, connections);
  }

  /** where connections go; settable later (the cloud needs the proxy's URL first) */
  get target(): { host: string; port: number } | undefined {
    return this.proxy.target;
  }

  set target(t: { host: string; port: number } | undefined) {
    this.proxy.target = t;
  }

  get url(): string {
    return this.proxy.url;
  }

  /** where it listens, for URLs of other schemes (mqtt://…) */
  get address(): { host: string; port: number } {
    return this.proxy.address;
  }

  /** Every byte clients sent, connection after connection. */
  sentBytes(): Buffer {
    return Buffer.concat(this.connections.flatMap((c) => c.sent));
  }

  receivedBytes(): Buffer {
    return Buffer.concat(this.connections.flatMap((c) => c.received));
  }

  close(): Promise<void> {
    return this.proxy.close();
  }
}

// ---- SMTP ------------------------------------------------------------------

export interface SmtpAuth {
  method: string;
  username: string;
  password: string;
  accepted: boolean;
}

export interface SmtpMail {
  from: string;
  to: string[];
  /** the user the session authenticated as */
  user: string | undefined;
  /** the message as received, CRLF kept */
  raw: Buffer;
}

export interface RecordingSmtp {
  port: number;
  auths: SmtpAuth[];
  mails: SmtpMail[];
  /** resolves once `n` mails have arrived in all */
  waitForMails(n: number, timeoutMs?: number): Promise<SmtpMail[]>;
  close(): Promise<void>;
}

export interface RecordingSmtpOptions {
  user: string;
  password: string;
  /** implicit TLS (port 465 style) with this key and certificate */
  secure?: { key: Buffer; cert: Buffer };
  /** offer STARTTLS with this key and certificate; without it STARTTLS is disabled */
  starttls?: { key: Buffer; cert: Buffer };
}

/** A real SMTP server on 127.0.0.1 port 0 that takes mail only from `user` / `password`. */
export async function startRecordingSmtp(opts: RecordingSmtpOptions): Promise<RecordingSmtp> {
  const auths: SmtpAuth[] = [];
  const mails: SmtpMail[] = [];
  let waiters: { n: number; resolve: () => void }[] = [];
  const tls = opts.secure ?? opts.starttls;
  const options: SMTPServerOptions = {
    authMethods: ['PLAIN', 'LOGIN'],
    logger: false,
    secure: opts.secure !== undefined,
    ...(tls ? { key: tls.key, cert: tls.cert } : {}),
    disabledCommands: opts.starttls || opts.secure ? [] : ['STARTTLS'],
    // plain AUTH is allowed only where there is no TLS to use
    allowInsecureAuth: !tls,
    onAuth(auth: SMTPServerAuthentication, _session: SMTPServerSession, cb) {
      const ok = auth.username === opts.user && auth.password === opts.password;
      auths.push({ method: auth.method, username: auth.username ?? '', password: auth.password ?? '', accepted: ok });
      if (ok) cb(null, { user: auth.username });
      else cb(Object.assign(new Error('Invalid username or password'), { responseCode: 535 }));
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        mails.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          user: typeof session.user === 'string' ? session.user : undefined,
          raw: Buffer.concat(chunks),
        });
        const due = waiters.filter((w) => mails.length >= w.n);
        waiters = waiters.filter((w) => mails.length < w.n);
        for (const w of due) w.resolve();
        cb();
      });
    },
  };
  const server = new SMTPServer(options);
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.server.address() as AddressInfo).port;
  return {
    port,
    auths,
    mails,
    waitForMails: (n, timeoutMs = 60_000) =>
      mails.length >= n
        ? Promise.resolve(mails)
        : new Promise((resolve, reject) => {
            const t = setTimeout(() => reject(new Error(`only ${mails.length} of ${n} mails arrived in ${timeoutMs} ms`)), timeoutMs);
            waiters.push({
              n,
              resolve: () => {
                clearTimeout(t);
                resolve(mails);
              },
            });
          }),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export interface MailPart {
  contentType: string;
  filename: string | undefined;
  body: Buffer;
}

/**
 * The leaf parts of a MIME message (multipart, one level of nesting or more),
 * base64 and quoted-printable bodies decoded. Enough for what nodemailer
 * writes; not a general parser.
 */
export function mailParts(raw: Buffer | string): MailPart[] {
  const text = (typeof raw === 'string' ? raw : raw.toString('latin1')).replace(/\r\n/g, '\n');
  const split = (entity: string): MailPart[] => {
    const cut = entity.indexOf('\n\n');
    const head = (cut < 0 ? entity : entity.slice(0, cut)).replace(/\n[ \t]+/g, ' ');
    const body = cut < 0 ? '' : entity.slice(cut + 2);
    const header = (name: string): string | undefined => new RegExp(`^${name}:\\s*(.*)$`, 'im').exec(head)?.[1]?.trim();
    const type = header('Content-Type') ?? 'text/plain';
    const boundary = /boundary="?([^";]+)"?/i.exec(type)?.[1];
    if (/^multipart\//i.test(type) && boundary) {
      return body
        .split(`--${boundary}`)
        .slice(1)
        .filter((p) => !p.startsWith('--'))
        .flatMap((p) => split(p.replace(/^\n/, '')));
    }
    const enc = (header('Content-Transfer-Encoding') ?? '7bit').toLowerCase();
    const data =
      enc === 'base64'
        ? Buffer.from(body.replace(/\s+/g, ''), 'base64')
        : enc === 'quoted-printable'
          ? Buffer.from(body.replace(/=\n/g, '').replace(/=([0-9A-F]{2})/gi, (_m, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1')
          : Buffer.from(body, 'latin1');
    const filename = /filename="?([^";]+)"?/i.exec(header('Content-Disposition') ?? '')?.[1] ?? /name="?([^";]+)"?/i.exec(type)?.[1];
    return [{ contentType: type.split(';')[0]!.trim().toLowerCase(), filename, body: data }];
  };
  return split(text);
}

// ---- secrets in captured bytes ---------------------------------------------

/** The run of base64 characters that encodes `secret` alone when it sits `k` bytes into a longer run. */
function base64Core(secret: Buffer, k: number, url: boolean): string {
  const enc = Buffer.concat([Buffer.alloc(k), secret]).toString(url ? 'base64url' : 'base64');
  return enc.slice(Math.ceil((8 * k) / 6), Math.floor((8 * (k + secret.length)) / 6));
}

export interface SecretForm {
  name: string;
  value: string;
}

/** Every form of `secret` a search must cover (duplicates removed). */
export function secretForms(secret: string): SecretForm[] {
  const buf = Buffer.from(secret, 'utf8');
  const uri = encodeURIComponent(secret);
  const forms: SecretForm[] = [
    { name: 'plain', value: secret },
    { name: 'url-encoded', value: uri },
    { name: 'url-encoded (lower-case hex)', value: uri.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()) },
    { name: 'form-encoded', value: new URLSearchParams({ x: secret }).toString().slice(2) },
    { name: 'JSON-escaped', value: JSON.stringify(secret).slice(1, -1) },
  ];
  for (const k of [0, 1, 2]) {
    forms.push({ name: `base64 (alignment ${k})`, value: base64Core(buf, k, false) });
    forms.push({ name: `base64url (alignment ${k})`, value: base64Core(buf, k, true) });
  }
  const seen = new Set<string>();
  // an encoded form shorter than 8 characters would match by chance; the plain form is always kept
  return forms.filter((f) => (f.name === 'plain' || f.value.length >= 8) && !seen.has(f.value) && (seen.add(f.value), true));
}

/** The forms of `secret` found in `haystack` (bytes are searched as they are: latin1 keeps every byte). */
export function findSecret(haystack: Buffer | string, secret: string): string[] {
  const hay = typeof haystack === 'string' ? Buffer.from(haystack, 'utf8') : haystack;
  return secretForms(secret)
    .filter((f) => hay.includes(Buffer.from(f.value, 'utf8')))
    .map((f) => f.name);
}
