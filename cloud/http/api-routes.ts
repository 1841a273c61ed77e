/**
 * Every API route, once: its input and answer schemas (the same zod objects
 * the route validates with, from shared/contracts), who may call it, and its
 * body limit. GET /docs is built from this table (cloud/openapi.ts) and the
 * body-limit hook reads it (cloud/http/hardening.ts).
 *
 * Adding a route: add one entry here. test/integration/openapi.test.ts lists
 * every route fastify registered and fails for one that has no entry, and
 * test/integration/bad-input.test.ts fails for one without a bad-input row.
 * A route that validates with a schema of its own (a params object local to a
 * route file) gets an equivalent one here; the OpenAPI test checks that the
 * API and the document accept and refuse the same inputs.
 */
import { z, type ZodTypeAny } from 'zod';
import {
  AccountDetailsResponse,
  AccountId,
  AccountResponse,
  BindCodeResponse,
  ChangePasswordRequest,
  ClaimRequest,
  ClaimResponse,
  Clip,
  ClipId,
  ClipListQuery,
  ClipListResponse,
  CompleteRequest,
  CompleteResponse,
  DeleteClipsRequest,
  DeleteClipsResponse,
  DevicesResponse,
  LoginRequest,
  LoginResponse,
  PasswordResetConfirmRequest,
  PasswordResetConfirmResponse,
  PasswordResetRequest,
  PasswordResetResponse,
  PlansResponse,
  PresignRequest,
  PresignResponse,
  RegisterRequest,
  RegisterResponse,
  Serial,
  SetPlanRequest,
  ShareRequest,
  ShareResponse,
  SharesResponse,
  VerifyEmailRequest,
  VerifyEmailResponse,
  ViewQuery,
  ViewResponse,
} from '../../shared/contracts/index.js';
import {
  AccountExport,
  CancelAccountRequest,
  CancelAccountResponse,
  ConsentsRequest,
  ConsentsResponse,
} from '../../shared/contracts/account-rights.js';
import { NotificationsResponse, WebhookRequest, WebhookResponse } from '../../shared/contracts/alerts.js';
import { DeviceConfigResponse } from '../../shared/contracts/devices.js';
import type { ErrorCode } from '../../shared/errors.js';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** Who may call a route: anyone, a subscriber's session (Bearer), or a bound device (Device serial:token). */
export type RouteAuth = 'none' | 'subscriber' | 'device';

export interface ApiRoute {
  method: HttpMethod;
  /** fastify's syntax: /v1/clips/:id */
  path: string;
  summary: string;
  /** rules the schema cannot say (a refinement across fields) */
  description?: string;
  /** groups operations in the document */
  tag: 'accounts' | 'plans' | 'devices' | 'device' | 'clips' | 'service';
  auth: RouteAuth;
  params?: z.AnyZodObject;
  query?: z.AnyZodObject;
  body?: ZodTypeAny;
  /** the body may be left out (POST …/complete of a single PUT) */
  bodyOptional?: boolean;
  /** status → answer schema; null: no JSON body (204, a redirect) */
  responses: Record<number, ZodTypeAny | null>;
  /** the refusals worth knowing about beyond VALIDATION_FAILED and the auth codes */
  errors?: ErrorCode[];
  /**
   * The largest JSON body the route reads, in bytes. Absent: SMALL_JSON_BODY_BYTES.
   * A route that sets bodyLimit in its own options keeps that.
   */
  bodyLimit?: number;
}

/**
 * The default body limit of a JSON route. The largest small body is a
 * registration or a password change: two strings of at most 256 and 254
 * characters, at most 6 bytes each once JSON-escaped (\uXXXX), about 3 KB.
 */
export const SMALL_JSON_BODY_BYTES = 8 * 1024;

/**
 * POST /v1/clips/delete takes up to 1000 clip ids: 29 bytes each as JSON
 * (~29 KB), more when a client pretty-prints it.
 */
export const DELETE_CLIPS_BODY_BYTES = 64 * 1024;

const ClipIdParams = z.object({ id: ClipId }).strict();
const UploadClipIdParams = z.object({ clipId: ClipId }).strict();
const SerialParams = z.object({ serial: Serial }).strict();
const ShareParams = z.object({ serial: Serial, accountId: AccountId }).strict();
const Health = z.object({ ok: z.literal(true) });

export const API_ROUTES: readonly ApiRoute[] = [
  // service
  { method: 'GET', path: '/healthz', tag: 'service', summary: 'Liveness: the process answers', auth: 'none', responses: { 200: Health } },
  {
    method: 'GET',
    path: '/docs',
    tag: 'service',
    summary: 'This OpenAPI document (JSON)',
    auth: 'none',
    responses: { 200: null },
  },
  {
    method: 'GET',
    path: '/docs/openapi.json',
    tag: 'service',
    summary: 'This OpenAPI document (JSON), under a file name tools expect',
    auth: 'none',
    responses: { 200: null },
  },

  // accounts and sessions
  {
    method: 'POST',
    path: '/v1/accounts',
    tag: 'accounts',
    summary: 'Register an account; a verification code is mailed (the answer is the same for an address already registered)',
    auth: 'none',
    body: RegisterRequest,
    responses: { 202: RegisterResponse },
    errors: ['RATE_LIMITED'],
  },
  {
    method: 'POST',
    path: '/v1/accounts/verify',
    tag: 'accounts',
    summary: 'Verify the address with the mailed code',
    auth: 'none',
    body: VerifyEmailRequest,
    responses: { 200: VerifyEmailResponse },
    errors: ['CODE_INVALID', 'RATE_LIMITED'],
  },
  {
    method: 'POST',
    path: '/v1/accounts/password-reset',
    tag: 'accounts',
    summary: 'Mail a password reset code (the answer is the same whether or not the address has an account)',
    auth: 'none',
    body: PasswordResetRequest,
    responses: { 202: PasswordResetResponse },
    errors: ['RATE_LIMITED'],
  },
  {
    method: 'POST',
    path: '/v1/accounts/password-reset/confirm',
    tag: 'accounts',
    summary: 'Set a new password with the mailed code; every session ends',
    auth: 'none',
    body: PasswordResetConfirmRequest,
    responses: { 200: PasswordResetConfirmResponse },
    errors: ['CODE_INVALID', 'RATE_LIMITED'],
  },
  {
    method: 'POST',
    path: '/v1/sessions',
    tag: 'accounts',
    summary: 'Log in: a session token',
    auth: 'none',
    body: LoginRequest,
    responses: { 200: LoginResponse },
    errors: ['INVALID_CREDENTIALS', 'EMAIL_NOT_VERIFIED', 'RATE_LIMITED'],
  },
  { method: 'DELETE', path: '/v1/sessions/current', tag: 'accounts', summary: 'Log out: end this session', auth: 'subscriber', responses: { 204: null } },
  {
    method: 'GET',
    path: '/v1/account',
    tag: 'accounts',
    summary: 'The account, with its oldest clip and its next expiry',
    auth: 'subscriber',
    responses: { 200: AccountDetailsResponse },
  },
  {
    method: 'PATCH',
    path: '/v1/account',
    tag: 'accounts',
    summary: "Change the password; the account's other sessions end",
    auth: 'subscriber',
    body: ChangePasswordRequest,
    responses: { 200: AccountResponse },
    errors: ['CURRENT_PASSWORD_WRONG', 'RATE_LIMITED'],
  },
  // the account holder's rights (issue 6): cloud/routes/account-rights.ts
  {
    method: 'DELETE',
    path: '/v1/account',
    tag: 'accounts',
    summary: 'Cancel the account (the password again): 202, then its clips, devices\' bindings, tokens and personal data are erased',
    description:
      'From the 202 on, the account\'s sessions, its devices and a login to it are answered 410 ACCOUNT_CANCELLED. The erase runs in the background and resumes after a crash; it ends once every upload URL handed out before it has expired.',
    auth: 'subscriber',
    body: CancelAccountRequest,
    responses: { 202: CancelAccountResponse },
    errors: ['CURRENT_PASSWORD_WRONG', 'ACCOUNT_CANCELLED', 'RATE_LIMITED'],
  },
  {
    method: 'GET',
    path: '/v1/account/export',
    tag: 'accounts',
    summary: "A copy of the account's personal data (JSON): profile, consents, devices, shares, security log with IPs, clip index",
    auth: 'subscriber',
    responses: { 200: AccountExport },
  },
  {
    method: 'GET',
    path: '/v1/account/consents',
    tag: 'accounts',
    summary: 'The consents: the experience program and marketing (both off until given)',
    auth: 'subscriber',
    responses: { 200: ConsentsResponse },
  },
  {
    method: 'PUT',
    path: '/v1/account/consents',
    tag: 'accounts',
    summary: 'Give or withdraw consents; withdrawing the experience program stops collection and deletes what was collected',
    auth: 'subscriber',
    body: ConsentsRequest,
    responses: { 200: ConsentsResponse },
  },

  // plans
  { method: 'GET', path: '/v1/plans', tag: 'plans', summary: 'The plans on offer', auth: 'none', responses: { 200: PlansResponse } },
  {
    method: 'PUT',
    path: '/v1/account/plan',
    tag: 'plans',
    summary: "Choose the account's plan",
    auth: 'subscriber',
    body: SetPlanRequest,
    responses: { 200: AccountResponse },
    errors: ['PLAN_NOT_FOUND'],
  },
  {
    method: 'DELETE',
    path: '/v1/account/plan',
    tag: 'plans',
    summary: 'Let the plan lapse: no more uploads; clips expire at the latest after the grace period',
    auth: 'subscriber',
    responses: { 200: AccountResponse },
  },

  // the subscriber's devices
  {
    method: 'POST',
    path: '/v1/devices/bind-codes',
    tag: 'devices',
    summary: 'A one-time code that binds a camera to this account (10 minutes)',
    auth: 'subscriber',
    responses: { 201: BindCodeResponse },
  },
  { method: 'GET', path: '/v1/devices', tag: 'devices', summary: "The account's cameras", auth: 'subscriber', responses: { 200: DevicesResponse } },
  {
    method: 'DELETE',
    path: '/v1/devices/:serial',
    tag: 'devices',
    summary: "Unbind a camera: its token stops working; its clips stay",
    auth: 'subscriber',
    params: SerialParams,
    responses: { 204: null },
    errors: ['DEVICE_NOT_FOUND'],
  },
  {
    method: 'POST',
    path: '/v1/devices/:serial/shares',
    tag: 'devices',
    summary: 'Share a camera with another account (by account id) as viewer or manager; again to change the role',
    auth: 'subscriber',
    params: SerialParams,
    body: ShareRequest,
    responses: { 201: ShareResponse, 200: ShareResponse },
    errors: ['DEVICE_NOT_FOUND', 'GRANTEE_NOT_FOUND', 'SHARE_WITH_OWNER'],
  },
  {
    method: 'GET',
    path: '/v1/devices/:serial/shares',
    tag: 'devices',
    summary: "A camera's shares (its owner only)",
    auth: 'subscriber',
    params: SerialParams,
    responses: { 200: SharesResponse },
    errors: ['DEVICE_NOT_FOUND'],
  },
  {
    method: 'DELETE',
    path: '/v1/devices/:serial/shares/:accountId',
    tag: 'devices',
    summary: 'Revoke a share (the owner), or give up one (the grantee)',
    auth: 'subscriber',
    params: ShareParams,
    responses: { 204: null },
    errors: ['DEVICE_NOT_FOUND', 'SHARE_NOT_FOUND'],
  },

  // the device's side
  {
    method: 'POST',
    path: '/v1/device/claim',
    tag: 'device',
    summary: 'A camera trades a bind code for its device token and MQTT credentials',
    auth: 'none',
    body: ClaimRequest,
    responses: { 200: ClaimResponse },
    errors: ['BIND_CODE_INVALID', 'DEVICE_BOUND_ELSEWHERE', 'CAMERA_LIMIT_REACHED', 'RATE_LIMITED'],
  },
  {
    method: 'POST',
    path: '/v1/device/uploads',
    tag: 'device',
    summary: 'Presign the upload of a clip: one PUT, or one PUT a part',
    description:
      'A clip above 5 MiB declares multipart: {partBytes, parts: [{md5}]}, and parts then holds exactly ceil(size / partBytes) entries. The cloud decides between a single PUT and parts (multipartThresholdBytes).',
    auth: 'device',
    body: PresignRequest,
    responses: { 200: PresignResponse },
    errors: ['CLIP_ALREADY_UPLOADED', 'PLAN_REQUIRED', 'CLIP_START_OUT_OF_RANGE', 'STORAGE_CAP_REACHED', 'MULTIPART_REQUIRED'],
    // the route sets its own limit (256 KiB): up to 1024 part MD5s, ~35 KB
  },
  {
    method: 'POST',
    path: '/v1/device/uploads/:clipId/complete',
    tag: 'device',
    summary: 'The object is in the store: check it and index the clip',
    auth: 'device',
    params: UploadClipIdParams,
    body: CompleteRequest,
    bodyOptional: true,
    responses: { 200: CompleteResponse },
    errors: ['UPLOAD_NOT_FOUND', 'UPLOAD_OBJECT_MISSING', 'UPLOAD_MISMATCH', 'PLAN_REQUIRED'],
    // the route sets its own limit (256 KiB): up to 1024 part ETags, ~65 KB
  },

  {
    method: 'GET',
    path: '/v1/device/config',
    tag: 'device',
    summary: 'Where the device reaches its MQTT broker (username = serial; the password came with the claim)',
    auth: 'device',
    responses: { 200: DeviceConfigResponse },
    errors: ['BROKER_UNAVAILABLE'],
  },

  // notifications (issue 7): cloud/routes/notifications.ts
  {
    method: 'GET',
    path: '/v1/notifications',
    tag: 'devices',
    summary: "Alerts of the account's cameras and of those shared with it: server-sent events, or the newest as JSON",
    description:
      'With `Accept: text/event-stream` (what EventSource sends): a stream of `event: alert` messages, `id:` the notification id, `data:` the Notification JSON, and a comment line every heartbeat; `Last-Event-ID` (a notification id) first replays what came after it, from the days the cloud keeps. Any other Accept: the newest 100 as JSON (the 200 schema below). At most notifications.maxStreamsPerAccount open streams per account and node (429 TOO_MANY_STREAMS).',
    auth: 'subscriber',
    responses: { 200: NotificationsResponse },
    errors: ['TOO_MANY_STREAMS'],
  },
  {
    method: 'PUT',
    path: '/v1/account/webhook',
    tag: 'accounts',
    summary: 'POST every notification to this https:// URL as well, signed with HMAC-SHA256 under the secret',
    description:
      'Each delivery is a POST of the Notification JSON with `X-Camvault-Timestamp` (Unix seconds) and `X-Camvault-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>`; failures (network, 408, 425, 429, 5xx) are retried a few times with growing waits. The URL must be https:// and name a public host (no loopback, private or link-local address, no credentials). Setting it again replaces it.',
    auth: 'subscriber',
    body: WebhookRequest,
    responses: { 200: WebhookResponse },
    errors: ['WEBHOOK_URL_INVALID'],
  },
  { method: 'DELETE', path: '/v1/account/webhook', tag: 'accounts', summary: "Remove the account's webhook", auth: 'subscriber', responses: { 204: null } },

  // clips
  {
    method: 'GET',
    path: '/v1/clips',
    tag: 'clips',
    summary: "The account's clips, newest first, a page at a time",
    auth: 'subscriber',
    query: ClipListQuery,
    responses: { 200: ClipListResponse },
  },
  {
    method: 'GET',
    path: '/v1/clips/:id',
    tag: 'clips',
    summary: 'One clip',
    auth: 'subscriber',
    params: ClipIdParams,
    responses: { 200: Clip },
    errors: ['CLIP_NOT_FOUND'],
  },
  {
    method: 'GET',
    path: '/v1/clips/:id/view',
    tag: 'clips',
    summary: 'A short-lived signed URL to watch (or, with download=true, download) the clip',
    auth: 'subscriber',
    params: ClipIdParams,
    query: ViewQuery,
    responses: { 200: ViewResponse },
    errors: ['CLIP_NOT_FOUND'],
  },
  {
    method: 'GET',
    path: '/v1/clips/:id/download',
    tag: 'clips',
    summary: 'A redirect (302) to a short-lived signed download URL',
    auth: 'subscriber',
    params: ClipIdParams,
    responses: { 302: null },
    errors: ['CLIP_NOT_FOUND'],
  },
  {
    method: 'DELETE',
    path: '/v1/clips/:id',
    tag: 'clips',
    summary: 'Delete a clip, from the store and the index',
    auth: 'subscriber',
    params: ClipIdParams,
    responses: { 204: null },
    errors: ['CLIP_NOT_FOUND'],
  },
  {
    method: 'POST',
    path: '/v1/clips/delete',
    tag: 'clips',
    summary: "Delete clips by id, or a camera's clips that start in [from, to)",
    auth: 'subscriber',
    body: DeleteClipsRequest,
    responses: { 200: DeleteClipsResponse },
    bodyLimit: DELETE_CLIPS_BODY_BYTES,
  },
];

/**
 * Routes fastify serves that are not part of the JSON API, and why. Anything
 * registered that is neither here nor in API_ROUTES fails the OpenAPI test.
 */
export const UNDOCUMENTED_ROUTES: Readonly<Record<string, string>> = {
  'PUT /objects/*': "the local object store's upload endpoint: reached only through URLs the API signs (presign answers), like S3",
  'GET /objects/*': "the local object store's download endpoint: reached only through URLs the API signs (view answers)",
  'HEAD /objects/*': "the local object store's HEAD: reached only through signed URLs",
  'OPTIONS *': 'CORS preflight (@fastify/cors), only when corsOrigins is set',
};

/** "POST /v1/accounts" */
export function routeKey(method: string, path: string): string {
  return `${method.toUpperCase()} ${path}`;
}

const BY_KEY = new Map(API_ROUTES.map((r) => [routeKey(r.method, r.path), r]));

export function findApiRoute(method: string, path: string): ApiRoute | undefined {
  return BY_KEY.get(routeKey(method, path));
}
