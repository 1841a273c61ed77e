/**
 * The one error catalogue. Every error the API returns carries one of these
 * codes, and the code never changes meaning. Clients (the agent, apps) branch on
 * the code, never on the message. A test checks every code is documented here and
 * has a 4xx/5xx status.
 */
export const errorCatalogue = {
  // request shape
  BAD_REQUEST: { status: 400, message: 'the request is malformed' },
  VALIDATION_FAILED: { status: 400, message: 'the request does not match the schema' },
  BODY_TOO_LARGE: { status: 413, message: 'the request body is too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'the content type is not supported' },
  ROUTE_NOT_FOUND: { status: 404, message: 'no such route' },
  METHOD_NOT_ALLOWED: { status: 405, message: 'method not allowed' },
  REQUEST_TIMEOUT: { status: 408, message: 'the request took too long to arrive' },
  HEADERS_TOO_LARGE: { status: 431, message: 'the request headers are too large' },
  URI_TOO_LONG: { status: 414, message: 'a path parameter of the request URL is too long' },
  // accounts and sessions
  // no longer answered (registration answers alike whether or not the email exists); kept so the code never means anything else
  EMAIL_TAKEN: { status: 409, message: 'an account with this email exists' },
  EMAIL_NOT_VERIFIED: { status: 403, message: 'the email address is not verified yet: enter the code that was mailed to it' },
  CODE_INVALID: { status: 400, message: 'the code is wrong, used or expired' },
  CURRENT_PASSWORD_WRONG: { status: 403, message: 'the current password is wrong' },
  INVALID_CREDENTIALS: { status: 401, message: 'email or password is wrong' },
  UNAUTHENTICATED: { status: 401, message: 'a valid session token is required' },
  FORBIDDEN: { status: 403, message: 'not allowed' },
  PLAN_NOT_FOUND: { status: 400, message: 'no such plan' },
  PLAN_REQUIRED: { status: 402, message: 'the account has no active plan' },
  // a cancelled account's sessions, its devices' credentials and a login to it (issue 6)
  ACCOUNT_CANCELLED: { status: 410, message: 'the account has been cancelled' },
  // devices
  DEVICE_UNAUTHENTICATED: { status: 401, message: 'a valid device credential is required' },
  BIND_CODE_INVALID: { status: 400, message: 'the bind code is unknown, used or expired' },
  DEVICE_BOUND_ELSEWHERE: { status: 409, message: 'the device is bound to another account; its owner must unbind it first' },
  DEVICE_NOT_FOUND: { status: 404, message: 'no such device' },
  CAMERA_LIMIT_REACHED: { status: 403, message: 'the plan allows no more cameras' },
  // shares
  GRANTEE_NOT_FOUND: { status: 404, message: 'no account with this id' },
  SHARE_NOT_FOUND: { status: 404, message: 'no such share' },
  SHARE_WITH_OWNER: { status: 400, message: 'a device cannot be shared with its own owner' },
  // notifications (issue 7)
  WEBHOOK_URL_INVALID: {
    status: 400,
    message: 'the webhook URL must be an https:// URL of a public host, without credentials',
  },
  TOO_MANY_STREAMS: { status: 429, message: 'too many notification streams are open for this account' },
  BROKER_UNAVAILABLE: { status: 503, message: 'the MQTT broker is not available' },
  // raised by the agent itself, never by the API: no stored device token and no bind code to claim one
  DEVICE_NOT_CLAIMED: { status: 401, message: 'the device is not claimed: it has no device token and no bind code' },
  // uploads and clips
  CLIP_NOT_FOUND: { status: 404, message: 'no such clip' },
  CLIP_ALREADY_UPLOADED: { status: 409, message: 'this clip has already been uploaded' },
  CLIP_START_OUT_OF_RANGE: { status: 400, message: 'the clip start time is too far from the server time' },
  STORAGE_CAP_REACHED: { status: 403, message: 'the plan storage cap is reached' },
  UPLOAD_NOT_FOUND: { status: 404, message: 'no upload was started for this clip' },
  UPLOAD_OBJECT_MISSING: { status: 409, message: 'the object has not arrived in the store' },
  UPLOAD_MISMATCH: { status: 422, message: 'the stored object does not match the declared size and MD5' },
  MULTIPART_REQUIRED: {
    status: 400,
    message: 'a clip this large must be uploaded in parts: send multipart.partBytes and the MD5 of each part',
  },
  // object store (local driver's signed URLs)
  URL_SIGNATURE_INVALID: { status: 403, message: 'the URL signature is invalid' },
  URL_EXPIRED: { status: 403, message: 'the URL has expired' },
  CONTENT_LENGTH_MISMATCH: { status: 400, message: 'the body length differs from the signed length' },
  CONTENT_MD5_MISMATCH: { status: 400, message: 'the body MD5 differs from the signed MD5' },
  OBJECT_NOT_FOUND: { status: 404, message: 'no such object' },
  RANGE_NOT_SATISFIABLE: { status: 416, message: 'the requested range is outside the object' },
  MULTIPART_UPLOAD_NOT_FOUND: { status: 404, message: 'no such multipart upload' },
  MULTIPART_PART_INVALID: { status: 400, message: 'a listed part is missing, out of order, too small, or has another ETag' },
  // server side
  RATE_LIMITED: { status: 429, message: 'too many requests' },
  SHUTTING_DOWN: { status: 503, message: 'the server is shutting down' },
  INTERNAL: { status: 500, message: 'internal error' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof errorCatalogue;

export interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: unknown };
}

/** An error with a catalogue code. Its message must never contain a secret. */
export class CamvaultError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details?: unknown;

  constructor(code: ErrorCode, message?: string, details?: unknown) {
    super(message ?? errorCatalogue[code].message);
    this.name = 'CamvaultError';
    this.code = code;
    this.status = errorCatalogue[code].status;
    this.details = details;
  }

  toBody(): ErrorBody {
    const body: ErrorBody = { error: { code: this.code, message: this.message } };
    if (this.details !== undefined) body.error.details = this.details;
    return body;
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(errorCatalogue, value);
}
