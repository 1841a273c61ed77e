import { isClipId, isSerial } from './ids.js';
import { CamvaultError } from './errors.js';

/** Account ids are ULIDs too. */
const ACCOUNT_RE = /^[0-9A-HJKMNP-TV-Z]{26}$/;

/**
 * The object key of a clip:
 * accounts/<accountId>/devices/<serial>/<yyyy>/<mm>/<dd>/<clipId>.mp4, UTC date of
 * the clip start. Every part is validated so a key can never escape its prefix.
 */
export function clipObjectKey(accountId: string, serial: string, clipId: string, startMs: number): string {
  if (!ACCOUNT_RE.test(accountId)) throw new CamvaultError('BAD_REQUEST', 'invalid account id');
  if (!isSerial(serial)) throw new CamvaultError('BAD_REQUEST', 'invalid serial');
  if (!isClipId(clipId)) throw new CamvaultError('BAD_REQUEST', 'invalid clip id');
  const d = new Date(startMs);
  if (Number.isNaN(d.getTime())) throw new CamvaultError('BAD_REQUEST', 'invalid clip start');
  const yyyy = String(d.getUTCFullYear()).padStart(4, '0');
  const mm = String(d.getUTCMonth() + 1).padStart(2, '0');
  const dd = String(d.getUTCDate()).padStart(2, '0');
  return `accounts/${accountId}/devices/${serial}/${yyyy}/${mm}/${dd}/${clipId}.mp4`;
}

export function accountPrefix(accountId: string): string {
  if (!ACCOUNT_RE.test(accountId)) throw new CamvaultError('BAD_REQUEST', 'invalid account id');
  return `accounts/${accountId}/`;
}

/**
 * What any driver accepts as a key: path segments of safe characters, no `..`,
 * no leading slash. The local driver maps keys to files, so this is what keeps a
 * key inside its root.
 */
export const OBJECT_KEY_RE = /^(?:[A-Za-z0-9_-][A-Za-z0-9._-]*\/)*[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

export function isObjectKey(key: unknown): key is string {
  return typeof key === 'string' && key.length <= 1024 && OBJECT_KEY_RE.test(key) && !key.split('/').includes('..');
}

/** A listing prefix: key characters only, no `..`, no leading slash. Both drivers check it. */
const OBJECT_PREFIX_RE = /^[A-Za-z0-9._/-]*$/;

export function isObjectPrefix(prefix: unknown): prefix is string {
  return typeof prefix === 'string' && OBJECT_PREFIX_RE.test(prefix) && !prefix.split('/').includes('..') && !prefix.startsWith('/');
}

/** A download's file name (Content-Disposition), the same rule on every driver. */
export const DOWNLOAD_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** 16 bytes of MD5 in base64, as Content-MD5 carries it. */
export const MD5_BASE64_RE = /^[A-Za-z0-9+/]{22}==$/;
