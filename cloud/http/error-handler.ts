import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { Socket } from 'node:net';
import { ZodError } from 'zod';
import { CamvaultError, isErrorCode, type ErrorCode } from '../../shared/errors.js';
import { validationIssues } from './validate.js';

/** fastify's own errors, by code, in the catalogue's words */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'BAD_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'BAD_REQUEST',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_BAD_URL: 'BAD_REQUEST',
  FST_ERR_INVALID_URL: 'BAD_REQUEST',
  FST_ERR_MAX_PARAM_LENGTH: 'URI_TOO_LONG',
  FST_ERR_NOT_FOUND: 'ROUTE_NOT_FOUND',
  FST_ERR_HANDLER_TIMEOUT: 'SHUTTING_DOWN',
};

const BY_STATUS: Record<number, ErrorCode> = {
  404: 'ROUTE_NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  408: 'REQUEST_TIMEOUT',
  413: 'BODY_TOO_LARGE',
  414: 'URI_TOO_LONG',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  416: 'RANGE_NOT_SATISFIABLE',
  429: 'RATE_LIMITED',
  431: 'HEADERS_TOO_LARGE',
  503: 'SHUTTING_DOWN',
};

function isCamvaultError(err: unknown): err is CamvaultError {
  // by shape as well as class: a second copy of the module must not turn a 404 into a 500
  return (
    err instanceof CamvaultError ||
    (err instanceof Error && err.name === 'CamvaultError' && isErrorCode((err as CamvaultError).code))
  );
}

/**
 * Any error to a catalogue error. Client errors keep the catalogue's message
 * (fastify's may quote the input); everything else is INTERNAL with nothing of
 * the original in it.
 */
export function toCamvaultError(err: unknown): CamvaultError {
  if (isCamvaultError(err)) return err;
  if (err instanceof ZodError) return new CamvaultError('VALIDATION_FAILED', undefined, validationIssues(err));
  const fe = err as Partial<FastifyError>;
  if (typeof fe.code === 'string' && FASTIFY_CODES[fe.code]) return new CamvaultError(FASTIFY_CODES[fe.code] as ErrorCode);
  const status = fe.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new CamvaultError(BY_STATUS[status] ?? 'BAD_REQUEST');
  }
  return new CamvaultError('INTERNAL');
}

export function errorHandler(err: unknown, req: FastifyRequest, reply: FastifyReply): void {
  const mapped = toCamvaultError(err);
  if (mapped.status >= 500 && mapped.code !== 'SHUTTING_DOWN') {
    req.log.error({ err }, 'request failed');
  } else {
    req.log.debug({ code: mapped.code }, 'request refused');
  }
  void reply.code(mapped.status).type('application/json; charset=utf-8').send(mapped.toBody());
}

/**
 * Errors the router raises before a route is found (a malformed percent
 * escape, a parameter over maxParamLength): fastify's `frameworkErrors`.
 * Without it they answer in fastify's own shape, outside the catalogue.
 */
export function frameworkErrorHandler(err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  errorHandler(err, req, reply);
}

export function notFoundHandler(_req: FastifyRequest, reply: FastifyReply): void {
  void reply.code(404).send(new CamvaultError('ROUTE_NOT_FOUND').toBody());
}

/**
 * Errors node's HTTP parser raises before fastify sees a request (malformed
 * request line, header overflow, a body cut short). Same body shape as the
 * rest of the API.
 */
export function clientErrorHandler(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const code: ErrorCode =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? 'REQUEST_TIMEOUT'
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? 'HEADERS_TOO_LARGE'
        : 'BAD_REQUEST';
  const error = new CamvaultError(code);
  const body = JSON.stringify(error.toBody());
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${error.status} Error\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(err);
}
