import { monotonicFactory, decodeTime } from 'ulid';

/** Serials become part of object keys and MQTT topics: checked at every boundary. */
export const SERIAL_RE = /^[A-Z0-9]{8,32}$/;
/** Crockford base32 ULID, upper case, 26 characters. */
export const ULID_RE = /^[0-9A-HJKMNP-TV-Z]{26}$/;

export function isSerial(value: unknown): value is string {
  return typeof value === 'string' && SERIAL_RE.test(value);
}

export function isClipId(value: unknown): value is string {
  return typeof value === 'string' && ULID_RE.test(value);
}

const nextUlid = monotonicFactory();

/** A ULID whose time part is `atMs` (the clip's start), monotonic within a process. */
export function newClipId(atMs: number = Date.now()): string {
  return nextUlid(atMs);
}

export function clipIdTime(id: string): number {
  return decodeTime(id);
}
