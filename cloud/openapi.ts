/**
 * GET /docs: the OpenAPI 3.1 description of the API, generated from the
 * table in cloud/http/api-routes.ts, whose schemas are the zod objects the
 * routes validate with. Nothing here is written by hand per route: a new
 * route's documentation is its entry in that table.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeAny } from 'zod';
import { zodToJsonSchema } from 'zod-to-json-schema';
import { ErrorResponse } from '../shared/contracts/index.js';
import { errorCatalogue, type ErrorCode } from '../shared/errors.js';
import type { AppContext } from './context.js';
import { API_ROUTES, type ApiRoute } from './http/api-routes.js';

export type JsonSchema = Record<string, unknown>;

export interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string; description: string };
  servers?: { url: string }[];
  tags: { name: string; description: string }[];
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, JsonSchema>; securitySchemes: Record<string, JsonSchema> };
}

export interface Parameter {
  name: string;
  in: 'path' | 'query';
  required: boolean;
  schema: JsonSchema;
}

export interface Operation {
  operationId: string;
  summary: string;
  description?: string;
  tags: string[];
  security?: Record<string, string[]>[];
  parameters?: Parameter[];
  requestBody?: { required: boolean; content: { 'application/json': { schema: JsonSchema } } };
  responses: Record<string, { description: string; content?: { 'application/json': { schema: JsonSchema } } }>;
}

/**
 * A zod schema as JSON Schema (draft 7, which OpenAPI 3.1's dialect
 * includes): strict objects say additionalProperties: false, the others take
 * extra fields, as zod does; refinements beyond the shape (a part count that
 * must match the size) are the route's to enforce.
 */
export function jsonSchemaOf(schema: ZodTypeAny): JsonSchema {
  const out = zodToJsonSchema(schema, { target: 'jsonSchema7', $refStrategy: 'none', removeAdditionalStrategy: 'strict' }) as JsonSchema;
  delete out.$schema;
  return out;
}

/** /v1/clips/:id → /v1/clips/{id} */
export function openApiPath(path: string): string {
  return path.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

/** POST /v1/clips/:id/view → getClipsByIdView */
function operationId(route: ApiRoute): string {
  const words = route.path
    .split('/')
    .filter((s) => s !== '' && s !== 'v1')
    .map((s) => (s.startsWith(':') ? `by-${s.slice(1)}` : s))
    .join('-')
    .split(/[-_.]/)
    .filter((w) => w !== '');
  return route.method.toLowerCase() + words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join('');
}

function parametersOf(schema: ApiRoute['params'] | ApiRoute['query'], where: 'path' | 'query'): Parameter[] {
  if (!schema) return [];
  return Object.entries(schema.shape as Record<string, ZodTypeAny>).map(([name, prop]) => ({
    name,
    in: where,
    required: where === 'path' || !prop.isOptional(),
    schema: jsonSchemaOf(prop),
  }));
}

const STATUS_TEXT: Record<number, string> = { 200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No content', 302: 'A redirect to the Location header' };

const errorContent = { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } };

/** The refusals a route may answer, grouped by status: "400: VALIDATION_FAILED, BAD_REQUEST". */
function errorCodesOf(route: ApiRoute): ErrorCode[] {
  const codes: ErrorCode[] = [];
  if (route.auth === 'subscriber') codes.push('UNAUTHENTICATED');
  if (route.auth === 'device') codes.push('DEVICE_UNAUTHENTICATED');
  if (route.params || route.query || route.body) codes.push('VALIDATION_FAILED');
  if (route.body) codes.push('BAD_REQUEST', 'BODY_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE');
  return [...codes, ...(route.errors ?? [])];
}

function operationOf(route: ApiRoute): Operation {
  const op: Operation = { operationId: operationId(route), summary: route.summary, tags: [route.tag], responses: {} };
  if (route.description) op.description = route.description;
  if (route.auth === 'subscriber') op.security = [{ session: [] }];
  if (route.auth === 'device') op.security = [{ device: [] }];
  const parameters = [...parametersOf(route.params, 'path'), ...parametersOf(route.query, 'query')];
  if (parameters.length > 0) op.parameters = parameters;
  if (route.body) {
    op.requestBody = { required: route.bodyOptional !== true, content: { 'application/json': { schema: jsonSchemaOf(route.body) } } };
  }
  for (const [status, schema] of Object.entries(route.responses)) {
    const description = STATUS_TEXT[Number(status)] ?? 'OK';
    op.responses[status] = schema ? { description, content: { 'application/json': { schema: jsonSchemaOf(schema) } } } : { description };
  }
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of errorCodesOf(route)) {
    const status = errorCatalogue[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  for (const [status, codes] of [...byStatus].sort(([a], [b]) => a - b)) {
    op.responses[String(status)] ??= { description: codes.join(', '), content: errorContent };
  }
  op.responses.default = { description: 'any other error of the catalogue (Error.code)', content: errorContent };
  return op;
}

const TAGS: OpenApiDocument['tags'] = [
  { name: 'accounts', description: 'Accounts and sessions' },
  { name: 'plans', description: 'Plans' },
  { name: 'devices', description: "The subscriber's cameras" },
  { name: 'device', description: 'Called by the camera (the agent), with its device credential' },
  { name: 'clips', description: 'Clips: list, view, download, delete' },
  { name: 'service', description: 'Health and this document' },
];

/** The whole document. `serverUrl` is the public URL, when known. */
export function buildOpenApiDocument(opts: { serverUrl?: string; routes?: readonly ApiRoute[] } = {}): OpenApiDocument {
  const paths: OpenApiDocument['paths'] = {};
  for (const route of opts.routes ?? API_ROUTES) {
    const p = openApiPath(route.path);
    paths[p] ??= {};
    paths[p][route.method.toLowerCase()] = operationOf(route);
  }
  const error = jsonSchemaOf(ErrorResponse);
  // the code is one of the catalogue's
  ((error.properties as Record<string, JsonSchema>).error!.properties as Record<string, JsonSchema>).code = {
    type: 'string',
    enum: Object.keys(errorCatalogue),
  };
  const doc: OpenApiDocument = {
    openapi: '3.1.0',
    info: {
      title: 'camvault API',
      version: 'v1',
      description:
        'JSON over HTTPS. Errors are {"error": {"code", "message"}} with a stable code from one catalogue; clients branch on the code, never on the message.',
    },
    tags: TAGS,
    paths,
    components: {
      schemas: { Error: error },
      securitySchemes: {
        session: { type: 'http', scheme: 'bearer', description: 'A session token from POST /v1/sessions' },
        device: {
          type: 'apiKey',
          in: 'header',
          name: 'Authorization',
          description: 'Device <serial>:<device token>, the token from POST /v1/device/claim',
        },
      },
    },
  };
  if (opts.serverUrl) doc.servers = [{ url: opts.serverUrl }];
  return doc;
}

/** GET /docs and GET /docs/openapi.json. The document is built once, on the first request. */
export async function openapiRoutes(app: FastifyInstance, ctx: AppContext): Promise<void> {
  let doc: OpenApiDocument | undefined;
  const serve = async (): Promise<OpenApiDocument> => {
    if (!doc) {
      let serverUrl: string | undefined;
      try {
        serverUrl = ctx.publicUrl();
      } catch {
        // not listening (inject()): a document without servers
      }
      doc = buildOpenApiDocument({ serverUrl });
    }
    return doc;
  };
  app.get('/docs', async (_req, reply) => reply.header('cache-control', 'public, max-age=300').send(await serve()));
  app.get('/docs/openapi.json', async (_req, reply) => reply.header('cache-control', 'public, max-age=300').send(await serve()));
}
