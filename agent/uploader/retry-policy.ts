/**
 * The uploader's retry policy, as data (after undici's RetryHandler options):
 * the numbers live in one object the uploader takes, and the decisions are
 * pure functions the tests drive without a network or a clock.
 */
export interface RetryPolicy {
  /** retries of one clip after its first attempt, before it waits in the queue */
  maxRetries: number;
  minDelayMs: number;
  maxDelayMs: number;
  /** each retry waits `factor` times longer than the one before */
  factor: number;
  /** 0..1: a delay is drawn from [d·(1−jitter), d], so a fleet does not retry in step */
  jitter: number;
  retryableStatuses: number[];
  /** wait at least as long as a 429/503 Retry-After asks */
  honourRetryAfter: boolean;
  /** ...but never longer than this */
  maxRetryAfterMs: number;
  /**
   * How long the whole queue waits after a refusal that retrying cannot fix
   * soon (no plan, storage full, device unbound) or after the network stayed
   * down through every retry; a clip that exhausted its retries waits as long.
   */
  parkMs: number;
  /** a clip re-presigns at once after URL_EXPIRED at most this many times per try */
  maxRepresigns: number;
  /**
   * After the store refused a body as not the one signed (MD5 or size
   * mismatch) and the file still hashes as journaled, the clip is sent again
   * at most this many times before it is marked failed.
   */
  maxIntegrityRetries: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxRetries: 5,
  minDelayMs: 1000,
  maxDelayMs: 60_000,
  factor: 2,
  jitter: 0.2,
  retryableStatuses: [408, 425, 429, 500, 502, 503, 504],
  honourRetryAfter: true,
  maxRetryAfterMs: 3_600_000,
  parkMs: 5 * 60_000,
  maxRepresigns: 3,
  maxIntegrityRetries: 2,
};

/**
 * The wait before retry number `retry` (1 for the first retry): exponential
 * from minDelayMs, capped at maxDelayMs, jittered downwards, and at least the
 * server's Retry-After when the policy honours it.
 */
export function retryDelayMs(policy: RetryPolicy, retry: number, retryAfterSec?: number, random: () => number = Math.random): number {
  const n = Math.max(1, retry);
  const base = Math.min(policy.maxDelayMs, policy.minDelayMs * policy.factor ** (n - 1));
  const jitter = Math.min(1, Math.max(0, policy.jitter));
  let delay = Math.round(base * (1 - jitter * random()));
  if (policy.honourRetryAfter && retryAfterSec !== undefined && Number.isFinite(retryAfterSec)) {
    delay = Math.max(delay, Math.min(policy.maxRetryAfterMs, Math.max(0, retryAfterSec) * 1000));
  }
  return delay;
}

/** What the uploader does about one failed step of an upload. */
export type FailureAction =
  /** wait (retryDelayMs) and try the clip again from presign */
  | 'retry'
  /** the presigned URL expired: presign again at once */
  | 'represign'
  /** the cloud already has this clip: it counts as uploaded */
  | 'done'
  /** the account or device is refused for now: stop the whole queue for parkMs */
  | 'park'
  /** the cloud refuses this clip for good: mark it failed, keep its file */
  | 'fail'
  /** the clip's file is gone */
  | 'lost'
  /**
   * the store refused the bytes as not the ones signed: hash the file again;
   * if it changed since it was journaled the clip is corrupt (failed), else
   * send it again within maxIntegrityRetries
   */
  | 'verify'
  /** the agent is stopping */
  | 'abort';

/** Refusals about the account or device, not the clip: every clip would get the same answer. */
export const PARK_CODES: ReadonlySet<string> = new Set([
  'PLAN_REQUIRED',
  'DEVICE_UNAUTHENTICATED',
  'STORAGE_CAP_REACHED',
  'CAMERA_LIMIT_REACHED',
  'DEVICE_NOT_FOUND',
  'FORBIDDEN',
  'SHUTTING_DOWN',
  // the owner cancelled the account: footage stays on the device, nothing is retried in a loop
  'ACCOUNT_CANCELLED',
]);

/**
 * The store's answers to a body that is not the one signed into the URL: the
 * local driver's codes, S3's (BadDigest: Content-MD5 differs; IncompleteBody:
 * shorter than Content-Length), and the cloud's check at complete.
 */
export const INTEGRITY_CODES: ReadonlySet<string> = new Set([
  'CONTENT_MD5_MISMATCH',
  'CONTENT_LENGTH_MISMATCH',
  'BadDigest',
  'InvalidDigest',
  'IncompleteBody',
  'UPLOAD_MISMATCH',
]);

export function classifyFailure(policy: RetryPolicy, failure: { status: number; code: string }): FailureAction {
  const { status, code } = failure;
  if (code === 'ABORTED') return 'abort';
  if (code === 'CLIP_ALREADY_UPLOADED') return 'done';
  if (code === 'URL_EXPIRED') return 'represign';
  // the store lost the multipart upload (aborted, or swept): presigning again starts another
  if (code === 'NoSuchUpload' || code === 'MULTIPART_UPLOAD_NOT_FOUND') return 'represign';
  if (code === 'FILE_MISSING') return 'lost';
  if (code === 'FILE_CHANGED' || code === 'FILE_UNREADABLE') return 'fail';
  // SHUTTING_DOWN is a 503 from one node: another node (or the same one, soon) takes the retry
  if (code === 'SHUTTING_DOWN') return 'retry';
  if (PARK_CODES.has(code)) return 'park';
  if (INTEGRITY_CODES.has(code)) return 'verify';
  // the PUT did not land: the whole presign, PUT, complete again
  if (code === 'UPLOAD_OBJECT_MISSING') return 'retry';
  if (status === 0) return 'retry';
  if (policy.retryableStatuses.includes(status)) return 'retry';
  return 'fail';
}

/** Codes for which an exhausted clip is given up rather than queued again. */
export function exhaustedGivesUp(code: string): boolean {
  // a body that keeps arriving wrong will not arrive right next hour either
  return INTEGRITY_CODES.has(code);
}

/** a gateway or a cloud that is down or overloaded: every clip would get the same answer */
const CLOUD_DOWN_STATUSES: ReadonlySet<number> = new Set([502, 503, 504]);

/**
 * Failures that say the network or the cloud, not this clip, is the problem,
 * so the whole queue pauses once a clip has used up its retries: no route to
 * the cloud, a timeout, a certificate the device refuses (it is the cloud's,
 * the same for every clip), or a gateway answering 502/503/504.
 */
export function isNetworkFailure(failure: { status: number; code: string }): boolean {
  if (failure.status === 0) return failure.code === 'NETWORK_ERROR' || failure.code === 'TIMEOUT' || failure.code === 'TLS_CERT_INVALID';
  return CLOUD_DOWN_STATUSES.has(failure.status);
}
