import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingMessage } from 'node:http';
import { CamvaultError } from '../../shared/errors.js';
import type { LocalObjectStore } from './local.js';
import { isPartUrl } from './local-signing.js';

export interface LocalObjectRoutesOptions {
  store: LocalObjectStore;
}

async function* noBody(): AsyncIterable<Uint8Array> {}

function keyOf(req: FastifyRequest): string {
  return (req.params as { '*'?: string })['*'] ?? '';
}

function queryOf(req: FastifyRequest): URLSearchParams {
  // parsed here rather than by fastify: '+' in a base64 MD5 must stay a '+'
  return new URL(req.url, 'http://local').searchParams;
}

function contentTypeOf(key: string): string {
  return key.endsWith('.mp4') ? 'video/mp4' : 'application/octet-stream';
}

/** A single "bytes=a-b" range; null means "send it all" (none, several, or a form we do not serve). */
function parseRange(header: string | undefined, size: number): { start: number; end: number } | null {
  if (header === undefined) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) throw new CamvaultError('RANGE_NOT_SATISFIABLE');
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || start > end) throw new CamvaultError('RANGE_NOT_SATISFIABLE');
  return { start, end };
}

/**
 * The HTTP face of the local driver: PUT (an object, or a part of a multipart
 * upload) and GET on /objects/<key>, each allowed only by a URL the cloud signed. Registered as an encapsulated plugin:
 * its catch-all content-type parser hands the raw request stream to the
 * handler, so an upload of any size streams to disk, bounded by the length
 * signed into its URL rather than by the JSON body limit.
 */
export async function localObjectRoutes(app: FastifyInstance, opts: LocalObjectRoutesOptions): Promise<void> {
  const { store } = opts;
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  // A refused PUT may still have most of its body on the wire: close the
  // connection rather than read and discard gigabytes to keep it alive.
  app.addHook('onSend', async (req, reply) => {
    if (req.method === 'PUT' && reply.statusCode >= 400) reply.header('connection', 'close');
  });

  // A whole object, or with uploadId and partNumber in its URL (as S3's
  // UploadPart) one part of a multipart upload. Each URL signs its length and
  // MD5, and the headers must say the same before a byte is stored.
  app.put('/objects/*', async (req: FastifyRequest, reply: FastifyReply) => {
    const key = keyOf(req);
    const query = queryOf(req);
    const part = isPartUrl(query) ? store.verifyPartPut(key, query) : null;
    const signed = part ?? store.verifyPut(key, query);
    if (req.headers['transfer-encoding'] !== undefined || req.headers['content-length'] !== String(signed.contentLength)) {
      throw new CamvaultError('CONTENT_LENGTH_MISMATCH', 'Content-Length must equal the signed length');
    }
    if (req.headers['content-md5'] !== signed.contentMd5) {
      throw new CamvaultError('CONTENT_MD5_MISMATCH', 'Content-MD5 must equal the signed MD5');
    }
    // no body at all arrives as undefined (a signed length of 0)
    const body: AsyncIterable<Uint8Array> = (req.body as IncomingMessage | undefined) ?? noBody();
    if (part) {
      const { md5Hex } = await store.writePart(key, body, part);
      req.log.debug({ size: part.contentLength, partNumber: part.partNumber }, 'part stored');
      return reply.code(200).header('etag', `"${md5Hex}"`).send();
    }
    const { md5Hex } = await store.writeObject(key, body, signed);
    req.log.debug({ size: signed.contentLength }, 'object stored');
    return reply.code(200).header('etag', `"${md5Hex}"`).send();
  });

  const serve = async (req: FastifyRequest, reply: FastifyReply, withBody: boolean) => {
    const key = keyOf(req);
    const { downloadName } = store.verifyGet(key, queryOf(req));
    const object = await store.openForRead(key);
    if (!object) throw new CamvaultError('OBJECT_NOT_FOUND');
    let range: { start: number; end: number } | null;
    try {
      range = parseRange(req.headers.range, object.size);
    } catch (err) {
      await object.handle.close();
      reply.header('content-range', `bytes */${object.size}`);
      throw err;
    }
    reply.header('content-type', contentTypeOf(key));
    reply.header('accept-ranges', 'bytes');
    reply.header('cache-control', 'private, max-age=0');
    if (downloadName !== undefined) reply.header('content-disposition', `attachment; filename="${downloadName}"`);
    const start = range?.start ?? 0;
    const end = range?.end ?? object.size - 1;
    if (range) reply.code(206).header('content-range', `bytes ${start}-${end}/${object.size}`);
    reply.header('content-length', String(end - start + 1));
    if (!withBody || object.size === 0) {
      await object.handle.close();
      return reply.send();
    }
    return reply.send(object.handle.createReadStream({ start, end, autoClose: true }));
  };

  // HEAD before GET, so fastify does not derive one that reads the whole file
  app.head('/objects/*', (req, reply) => serve(req, reply, false));
  app.get('/objects/*', (req, reply) => serve(req, reply, true));
}
