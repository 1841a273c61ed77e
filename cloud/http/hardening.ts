/**
 * HTTP hardening of the whole app: security headers (@fastify/helmet), CORS
 * only for an explicit allowlist, a body limit on every route, and a record
 * of the routes fastify registered (the OpenAPI and bad-input tests enumerate
 * it). Applied by buildApp before any route is registered.
 */
import cors from '@fastify/cors';
import type { IncomingMessage, ServerResponse } from 'node:http';
import helmet from 'helmet';
import type { FastifyInstance, RouteOptions } from 'fastify';
import type { CloudConfig } from '../config.js';
import { findApiRoute, SMALL_JSON_BODY_BYTES } from './api-routes.js';

export interface RegisteredRoute {
  method: string;
  /** fastify's path syntax, prefix included: /v1/clips/:id, /objects/* */
  url: string;
  /** the body limit the route runs with; undefined: the app's (config.bodyLimitBytes) or none (a streamed body) */
  bodyLimit: number | undefined;
}

/** Routes whose body is a stream the handler reads itself: no JSON limit applies. */
const STREAMED_BODY_ROUTES: ReadonlySet<string> = new Set(['PUT /objects/*']);

/** The local store's object routes: signed URLs a browser may embed from the subscriber's web app. */
function isObjectRoute(url: string): boolean {
  return url.startsWith('/objects/');
}

const ROUTES = new WeakMap<FastifyInstance, RegisteredRoute[]>();

/** Every route registered on an app built by buildApp, HEAD routes fastify derived from GETs included. */
export function registeredRoutes(app: FastifyInstance): readonly RegisteredRoute[] {
  return ROUTES.get(app) ?? [];
}

/**
 * The body limit of a route: its own when it declares one, none for a
 * streamed body, else its entry in API_ROUTES (SMALL_JSON_BODY_BYTES by
 * default), never above the app's limit unless the table says so.
 */
export function bodyLimitFor(method: string, url: string, declared: number | undefined, appLimit: number): number | undefined {
  if (declared !== undefined) return declared;
  if (STREAMED_BODY_ROUTES.has(`${method} ${url}`)) return undefined;
  const entry = findApiRoute(method, url);
  if (entry?.bodyLimit !== undefined) return entry.bodyLimit;
  return Math.min(SMALL_JSON_BODY_BYTES, appLimit);
}

/** The headers helmet's middleware sets for `options`, once: it sets the same ones on every answer. */
function helmetHeaders(options: Parameters<typeof helmet>[0]): Record<string, string> {
  const headers: Record<string, string> = {};
  const res = {
    setHeader: (name: string, value: string | number | readonly string[]) => {
      headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : String(value);
    },
    removeHeader: (name: string) => {
      delete headers[name.toLowerCase()];
    },
  };
  helmet(options)({} as IncomingMessage, res as unknown as ServerResponse, (err?: unknown) => {
    if (err) throw err as Error;
  });
  return headers;
}

export interface HardeningOptions {
  /** the server speaks TLS itself, or sits behind a terminator at an https:// public URL */
  secure: boolean;
}

export function applyHardening(app: FastifyInstance, config: CloudConfig, opts: HardeningOptions): void {
  const routes: RegisteredRoute[] = [];
  ROUTES.set(app, routes);

  app.addHook('onRoute', (route: RouteOptions) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      const bodyLimit = bodyLimitFor(method, route.url, route.bodyLimit, config.bodyLimitBytes);
      if (bodyLimit !== undefined) route.bodyLimit = bodyLimit;
      routes.push({ method, url: route.url, bodyLimit });
    }
  });

  // Security headers: helmet's, worked out once per policy and then set as one
  // object per answer. @fastify/helmet rebuilt helmet's middleware on every
  // request in two hooks, and even a prebuilt middleware calls setHeader a
  // dozen times per answer: on the presign route those cost a sixth, then a
  // tenth, of the endpoint's throughput (bench/presign).
  const policy = {
    // JSON and video only, never HTML: a CSP has nothing to govern here, and
    // browsers apply it to the media document of a clip opened in a tab
    contentSecurityPolicy: false,
    // only where the browser reached us over HTTPS; on plain HTTP it is ignored anyway
    strictTransportSecurity: opts.secure ? { maxAge: 365 * 24 * 3600, includeSubDomains: false } : false,
    // signed URLs carry their signature in the query: never send them on as a Referer
    referrerPolicy: { policy: 'no-referrer' },
  } as const;
  const apiHeaders = helmetHeaders(policy);
  // a signed clip URL is a capability the subscriber's web app (another
  // origin) plays in a <video>: the default same-origin CORP would block it
  const objectHeaders = helmetHeaders({ ...policy, crossOriginResourcePolicy: { policy: 'cross-origin' } });
  // Answers carry tokens, signed URLs and personal data: no cache keeps them.
  // Set here with the rest, before the handler, so a route that means
  // otherwise (the object store's GET) simply sets its own.
  apiHeaders['cache-control'] = 'no-store';
  objectHeaders['cache-control'] = 'no-store';
  app.addHook('onRequest', (req, reply, done) => {
    reply.headers(isObjectRoute(req.routeOptions.url ?? '') ? objectHeaders : apiHeaders);
    done();
  });

  // No CORS headers at all unless origins are listed: a browser on another
  // origin then cannot read an answer. '*' is refused when the config loads.
  if (config.corsOrigins.length > 0) {
    void app.register(cors, {
      origin: config.corsOrigins,
      methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
      allowedHeaders: ['authorization', 'content-type'],
      // sessions are Bearer tokens, never cookies
      credentials: false,
      maxAge: 600,
    });
  }
}
