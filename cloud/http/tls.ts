import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { TlsSettings } from '../config.js';

/** What fastify's `https` option takes. */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
}

/**
 * A certificate or key that cannot be used. Its message is one line naming
 * the file (never its contents: a key is a secret); `npm run cloud` prints it
 * and exits 1.
 */
export class TlsConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'TlsConfigError';
  }
}

function readPem(what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new TlsConfigError(`TLS ${what} file ${file} cannot be read: ${code}`);
  }
}

/**
 * Reads the certificate and key named in the configuration and checks that
 * they make a TLS context (PEM that parses, a key that belongs to the
 * certificate) before the server starts: OpenSSL's own error, raised later
 * from inside fastify, would not say which file is wrong.
 */
export function loadTlsMaterial(settings: TlsSettings): TlsMaterial {
  const cert = readPem('certificate', settings.certFile);
  const key = readPem('key', settings.keyFile);
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    // OpenSSL's reason ("key values mismatch", "no start line"), never the bytes
    const reason = ((err as { reason?: string }).reason ?? (err as Error).message).replace(/\s*\n\s*/g, ' ');
    throw new TlsConfigError(`TLS certificate ${settings.certFile} and key ${settings.keyFile} cannot be used: ${reason}`);
  }
  return { cert, key };
}
