/**
 * The pure rules under notifications and the broker ACL (issue 7), checked
 * without a network: what a device may publish and subscribe to, what the
 * cloud reads from a device topic, the per-device alert limit, notification
 * ids, and which webhook URLs are taken.
 */
import { describe, expect, it } from 'vitest';
import { mayPublish, maySubscribe } from '../../cloud/mqtt/acl.js';
import { dynsecPassword } from '../../cloud/mqtt/dynsec.js';
import { readInbound } from '../../cloud/mqtt/intake.js';
import { AlertLimiter } from '../../cloud/notifications/alert-limiter.js';
import { notificationId } from '../../cloud/notifications/notification-id.js';
import { isSpecialAddress, webhookUrlProblem } from '../../cloud/notifications/webhook-url.js';

const S = 'CAM00000001';
const OTHER = 'CAM00000002';

describe('the device ACL', () => {
  it.each([
    [`devices/${S}/alerts`, true],
    [`devices/${S}/status`, true],
    [`devices/${S}/x/y`, true],
    [`devices/${S}/`, false],
    [`devices/${S}`, false],
    [`devices/${OTHER}/alerts`, false],
    [`devices/${S}0/alerts`, false],
    ['devices/+/alerts', false],
    [`devices/${S}/+`, false],
    [`devices/${S}/#`, false],
    ['$SYS/broker', false],
    [`devices/${S}/a\u0000b`, false],
  ])('publish to %s: %s', (topic, ok) => {
    expect(mayPublish(S, topic)).toBe(ok);
  });

  it.each([
    [`devices/${S}/#`, true],
    [`devices/${S}/commands`, true],
    [`devices/${S}/+`, true],
    [`devices/${OTHER}/commands`, false],
    ['devices/+/commands', false],
    ['devices/#', false],
    ['#', false],
    ['$SYS/#', false],
    [`$share/g/devices/${S}/#`, false],
  ])('subscribe to %s: %s', (filter, ok) => {
    expect(maySubscribe(S, filter)).toBe(ok);
  });

  it('a username that is not a serial may do nothing', () => {
    expect(mayPublish('cam/../x', 'devices/cam/../x/alerts')).toBe(false);
    expect(maySubscribe('', 'devices//#')).toBe(false);
  });
});

describe('what the cloud reads from a device topic', () => {
  const alert = { serial: S, type: 'motion', at: '2026-06-01T12:00:00.000Z' };
  const read = (topic: string, payload: unknown) => readInbound(topic, Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload)));

  it('an alert of the allowlist, from the device its topic names', () => {
    expect(read(`devices/${S}/alerts`, alert)).toEqual({ kind: 'alert', alert });
    expect(read(`devices/${S}/alerts`, { ...alert, clipId: '01ARZ3NDEKTSV4RRFFQ69G5FAV' })).toMatchObject({ kind: 'alert' });
  });

  it.each([
    ['an extra field', { ...alert, ssid: 'home' }, 'invalid'],
    ['an SMTP setting', { ...alert, smtp: { host: 'x' } }, 'invalid'],
    ['another type', { ...alert, type: 'doorbell' }, 'invalid'],
    ['a bad time', { ...alert, at: 'yesterday' }, 'invalid'],
    ['not JSON', 'motion!', 'invalid'],
    ['another serial', { ...alert, serial: OTHER }, 'serial-mismatch'],
    ['too large', { ...alert, pad: 'x'.repeat(5000) }, 'invalid'],
  ])('%s is dropped', (_what, payload, reason) => {
    expect(read(`devices/${S}/alerts`, payload)).toEqual({ kind: 'dropped', reason });
  });

  it('a status is online or offline; anything else, or another topic, is dropped', () => {
    expect(read(`devices/${S}/status`, 'online')).toEqual({ kind: 'status', serial: S, status: 'online' });
    expect(read(`devices/${S}/status`, 'offline\n')).toEqual({ kind: 'status', serial: S, status: 'offline' });
    expect(read(`devices/${S}/status`, 'rebooting')).toEqual({ kind: 'dropped', reason: 'invalid' });
    expect(read(`devices/${S}/commands`, '{}')).toEqual({ kind: 'dropped', reason: 'unknown-topic' });
    expect(read('devices/not-a-serial/alerts', alert)).toEqual({ kind: 'dropped', reason: 'unknown-topic' });
    expect(read('elsewhere', alert)).toEqual({ kind: 'dropped', reason: 'unknown-topic' });
  });
});

describe('the per-device alert limit', () => {
  it('lets a burst through, then one per refill, per device', () => {
    const limiter = new AlertLimiter({ burst: 3, perMinute: 6 });
    const t0 = 1_000_000;
    expect([1, 2, 3, 4].map(() => limiter.take(S, t0))).toEqual([true, true, true, false]);
    // another device has a bucket of its own
    expect(limiter.take(OTHER, t0)).toBe(true);
    // 6 a minute: one token every 10 s
    expect(limiter.take(S, t0 + 9_999)).toBe(false);
    expect(limiter.take(S, t0 + 10_000)).toBe(true);
    expect(limiter.take(S, t0 + 10_001)).toBe(false);
    // refilled, never above the burst
    expect([1, 2, 3, 4].map(() => limiter.take(S, t0 + 3_600_000))).toEqual([true, true, true, false]);
  });

  it('forgets buckets that are full again', () => {
    const limiter = new AlertLimiter({ burst: 2, perMinute: 60 });
    limiter.take(S, 0);
    limiter.take(OTHER, 0);
    limiter.take(OTHER, 0);
    limiter.prune(1500);
    expect(limiter.size).toBe(1);
    limiter.prune(2000);
    expect(limiter.size).toBe(0);
  });
});

describe('notification ids', () => {
  const alert = { serial: S, type: 'motion' as const, at: '2026-06-01T12:00:00.000Z' };
  it('are the same for the same alert, however its time is written, and differ for any other', () => {
    const id = notificationId(alert);
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(notificationId({ ...alert, at: '2026-06-01T14:00:00.000+02:00' })).toBe(id);
    expect(notificationId({ ...alert, serial: OTHER })).not.toBe(id);
    expect(notificationId({ ...alert, at: '2026-06-01T12:00:00.001Z' })).not.toBe(id);
    expect(notificationId({ ...alert, clipId: '01ARZ3NDEKTSV4RRFFQ69G5FAV' })).not.toBe(id);
  });
});

describe('webhook URLs', () => {
  it.each([
    ['https://hooks.example.com/x', null, null],
    ['https://hooks.example.com:8443/path?q=1', null, null],
    ['https://8.8.8.8/x', null, null],
    ['http://hooks.example.com/x', 'not https', null],
    ['https://localhost/x', 'a loopback host', null],
    ['https://LOCALHOST./x', 'a loopback host', null],
    ['https://127.0.0.1/x', 'a loopback, private or special address', null],
    ['http://127.0.0.1:8080/x', 'not https', null],
    ['https://10.0.0.1/x', 'a loopback, private or special address', null],
    ['https://100.64.1.1/x', 'a loopback, private or special address', null],
    ['https://169.254.169.254/x', 'a loopback, private or special address', null],
    ['https://[fe80::1]/x', 'a loopback, private or special address', null],
    ['https://[::ffff:10.0.0.1]/x', 'a loopback, private or special address', null],
    ['https://u:p@hooks.example.com/x', 'credentials in the URL', 'credentials in the URL'],
    ['ftp://hooks.example.com/x', 'not https', 'not https'],
    ['not a url', 'not a URL', 'not a URL'],
  ])('%s: %s (development: %s)', (url, strict, dev) => {
    expect(webhookUrlProblem(url, false)).toBe(strict);
    const relaxed = url.startsWith('http') && !url.includes('@') ? null : dev;
    expect(webhookUrlProblem(url, true)).toBe(relaxed);
  });

  it('knows the special addresses of both families', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', '172.31.255.255', '192.168.0.1', '0.0.0.0', '::1', '::', 'fd12::1', '::ffff:127.0.0.1', '224.0.0.1']) {
      expect(isSpecialAddress(a), a).toBe(true);
    }
    for (const a of ['8.8.8.8', '172.32.0.1', '2606:4700::1111', '::ffff:8.8.8.8']) expect(isSpecialAddress(a), a).toBe(false);
  });
});

describe("Mosquitto's password format", () => {
  it('is PBKDF2-SHA512 with 101 iterations and a 12-byte salt, as mosquitto_ctrl writes it', () => {
    // mosquitto_ctrl dynsec init made this for "adminpw" with this salt (Mosquitto 2.0.11)
    const salt = Buffer.from('9IZ+3aotOsu+XRaE', 'base64');
    expect(dynsecPassword('adminpw', salt)).toEqual({
      password: 'HezEE04FWEj7cNsmwr0Kbmi9vOyp1l35FWL7B08rc2c8qsOXsMNbUMk0Plns1oa+gmR8oAjns3S1sBzKLSVfhQ==',
      salt: '9IZ+3aotOsu+XRaE',
      iterations: 101,
    });
    expect(Buffer.from(dynsecPassword('x').salt, 'base64')).toHaveLength(12);
  });
});
