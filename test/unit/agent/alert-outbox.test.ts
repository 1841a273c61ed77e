/**
 * The logic of the agent's MQTT side (issue 7), without a broker: the alert
 * outbox's sending order and window over a real journal with a publisher
 * that the test answers by hand, the reconnect pace, the broker URL rule, and
 * command parsing. The broker itself is in test/integration/agent-mqtt*.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Journal } from '../../../agent/journal/journal.js';
import { AlertOutbox, type AlertPublisher, type AlertSent } from '../../../agent/mqtt/alert-outbox.js';
import { brokerLabel, checkBrokerUrl } from '../../../agent/mqtt/broker-url.js';
import { MAX_COMMAND_BYTES, parseCommand } from '../../../agent/mqtt/commands.js';
import { DEFAULT_RECONNECT_POLICY, reconnectDelayMs } from '../../../agent/mqtt/reconnect.js';
import { ManualClock } from '../../../shared/clock.js';
import { Alert } from '../../../shared/contracts/alerts.js';
import { newClipId } from '../../../shared/ids.js';
import { createLogger } from '../../../shared/log.js';
import { waitFor } from '../../helpers/media.js';

const SERIAL = 'CAMOUTBOX001';
const T0 = Date.parse('2026-05-01T08:00:00Z');
const logger = createLogger({ level: 'silent' });

/** A broker connection the test drives: it records publishes and answers each PUBACK on demand. */
class HandPublisher implements AlertPublisher {
  connected = true;
  readonly sent: { topic: string; payload: string; ack: () => void; fail: () => void }[] = [];
  publish(topic: string, payload: string): Promise<void> {
    if (!this.connected) return Promise.reject(new Error('NOT_CONNECTED'));
    return new Promise((resolve, reject) => this.sent.push({ topic, payload, ack: resolve, fail: () => reject(new Error('CONNECTION_LOST')) }));
  }
  /** the connection breaks: every publish waiting for a PUBACK fails */
  drop(): void {
    this.connected = false;
    for (const s of this.sent.splice(0)) s.fail();
  }
}

let dir: string;
let clock: ManualClock;
let journal: Journal;
let outbox: AlertOutbox | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'camvault-outbox-logic-'));
  clock = new ManualClock(T0);
  journal = Journal.open(dir, { clock });
});
afterEach(async () => {
  await outbox?.stop();
  outbox = undefined;
  journal.close();
  rmSync(dir, { recursive: true, force: true });
});

const atOf = (payload: string): number => Date.parse((JSON.parse(payload) as Alert).at);

describe('alert outbox', () => {
  it('sends in order, at most `window` at a time, with exactly the Alert fields, and forgets an alert only on its PUBACK', async () => {
    outbox = new AlertOutbox({ journal, serial: SERIAL, logger, clock, max: 100, window: 3 });
    const pub = new HandPublisher();
    const sent: AlertSent[] = [];
    outbox.on('alert-sent', (e: AlertSent) => sent.push(e));
    for (let i = 0; i < 5; i++) outbox.motion(T0 + i * 1000);
    outbox.start(pub);
    await waitFor(() => pub.sent.length === 3, 2000, 'a full window');
    expect(pub.sent.map((s) => s.topic)).toEqual(Array(3).fill(`devices/${SERIAL}/alerts`));
    for (const s of pub.sent) {
      const body = JSON.parse(s.payload) as Record<string, unknown>;
      expect(Object.keys(body).sort()).toEqual(['at', 'serial', 'type']);
      expect(Alert.parse(body)).toEqual({ serial: SERIAL, type: 'motion', at: new Date(atOf(s.payload)).toISOString() });
    }
    expect(pub.sent.map((s) => atOf(s.payload) - T0)).toEqual([0, 1000, 2000]);
    expect(journal.alertOutboxSize()).toBe(5);
    pub.sent[1]?.ack();
    await waitFor(() => pub.sent.length === 4, 2000, 'the window refilled');
    expect(journal.alertOutboxSize()).toBe(4);
    expect(sent.map((e) => atOf(JSON.stringify(e.alert)) - T0)).toEqual([1000]);
    for (const s of pub.sent.slice()) s.ack();
    await waitFor(() => pub.sent.length === 5, 2000, 'the last alert');
    pub.sent[4]?.ack();
    await waitFor(() => journal.alertOutboxSize() === 0, 2000, 'an empty outbox');
    expect(pub.sent.map((s) => atOf(s.payload) - T0)).toEqual([0, 1000, 2000, 3000, 4000]);
  });

  it('after a broken connection sends again from the oldest alert not acknowledged', async () => {
    outbox = new AlertOutbox({ journal, serial: SERIAL, logger, clock, max: 100, window: 2 });
    const pub = new HandPublisher();
    for (let i = 0; i < 4; i++) outbox.motion(T0 + i);
    outbox.start(pub);
    await waitFor(() => pub.sent.length === 2, 2000, 'a full window');
    pub.sent[0]?.ack();
    await waitFor(() => pub.sent.length === 3, 2000, 'the window refilled');
    const before = pub.sent.map((s) => atOf(s.payload) - T0);
    expect(before).toEqual([0, 1, 2]);
    pub.drop();
    // back: the two never acknowledged go again, first, then the rest
    pub.connected = true;
    outbox.connected();
    await waitFor(() => pub.sent.length === 2, 2000, 'the resend');
    expect(pub.sent.map((s) => atOf(s.payload) - T0)).toEqual([1, 2]);
    for (const s of pub.sent.splice(0)) s.ack();
    await waitFor(() => pub.sent.length === 1, 2000, 'the last alert');
    expect(atOf(pub.sent[0]?.payload ?? '') - T0).toBe(3);
  });

  it('holds an alert for its clip id up to alertClipWaitSec, and the alerts behind it too', async () => {
    outbox = new AlertOutbox({ journal, serial: SERIAL, logger, clock, max: 100, clipWaitMs: 60_000, idlePollMs: 20 });
    const pub = new HandPublisher();
    outbox.start(pub);
    outbox.motion(T0 + 2000);
    outbox.motion(T0 + 30_000);
    await new Promise((r) => setTimeout(r, 100));
    expect(pub.sent).toEqual([]);
    // the segment [T0, T0 + 10 s) held the first motion: its clip is journaled
    const clipId = newClipId(T0);
    outbox.clipJournaled({ id: clipId, kind: 'event', startMs: T0, durationMs: 10_000 }, 1000);
    await waitFor(() => pub.sent.length === 1, 2000, 'the first alert, with its clip');
    expect(JSON.parse(pub.sent[0]?.payload ?? '')).toEqual({ serial: SERIAL, type: 'motion', at: new Date(T0 + 2000).toISOString(), clipId });
    pub.sent[0]?.ack();
    // the second one's clip never comes (the recorder is down): it goes without once its wait is over
    clock.advance(90_001);
    await waitFor(() => pub.sent.length === 2, 2000, 'the second alert, without a clip');
    expect(JSON.parse(pub.sent[1]?.payload ?? '')).toEqual({ serial: SERIAL, type: 'motion', at: new Date(T0 + 30_000).toISOString() });
  });

  it('sends a motion that comes after the outbox emptied (a seq is never reused below the cursor)', async () => {
    // the bench's alert_to_sse: each motion is acknowledged before the next; SQLite
    // gave the next alert the rowid of the one just deleted, behind the cursor, and
    // every second alert stayed in the outbox for good on a live connection
    outbox = new AlertOutbox({ journal, serial: SERIAL, logger, clock, max: 100 });
    const pub = new HandPublisher();
    outbox.start(pub);
    const seqs: number[] = [];
    for (let i = 0; i < 4; i++) {
      const queued = new Promise<number>((resolve) => outbox?.once('alert-queued', (e: { seq: number }) => resolve(e.seq)));
      outbox.motion(T0 + i * 300);
      seqs.push(await queued);
      await waitFor(() => pub.sent.length === i + 1, 2000, `alert ${i + 1} published`);
      pub.sent[i]?.ack();
      await waitFor(() => journal.alertOutboxSize() === 0, 2000, `alert ${i + 1} acknowledged`);
    }
    expect(pub.sent.map((s) => atOf(s.payload) - T0)).toEqual([0, 300, 600, 900]);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(4);
  });

  it('keeps alerts while no broker is connected, bounded and counted', async () => {
    outbox = new AlertOutbox({ journal, serial: SERIAL, logger, clock, max: 3 });
    const pub = new HandPublisher();
    pub.connected = false;
    outbox.start(pub);
    for (let i = 0; i < 5; i++) outbox.motion(T0 + i);
    expect(outbox.waiting).toBe(3);
    expect(journal.stats().alerts_dropped?.n).toBe(2);
    pub.connected = true;
    outbox.connected();
    await waitFor(() => pub.sent.length === 3, 2000, 'the kept alerts');
    expect(pub.sent.map((s) => atOf(s.payload) - T0)).toEqual([2, 3, 4]);
  });
});

describe('reconnect pace', () => {
  const p = { ...DEFAULT_RECONNECT_POLICY, jitter: 0 };
  it('backs off exponentially from a second to a minute after network failures', () => {
    expect([1, 2, 3, 4, 7, 8, 50, 10_000].map((n) => reconnectDelayMs(p, n, 'network'))).toEqual([1000, 2000, 4000, 8000, 60_000, 60_000, 60_000, 60_000]);
  });
  it('waits minutes after a refused credential', () => {
    expect([1, 2, 5, 100].map((n) => reconnectDelayMs(p, n, 'refused'))).toEqual([60_000, 120_000, 900_000, 900_000]);
  });
  it('spreads retries by the jitter, never below the floor', () => {
    const q = DEFAULT_RECONNECT_POLICY;
    const lo = reconnectDelayMs(q, 3, 'network', () => 0);
    const hi = reconnectDelayMs(q, 3, 'network', () => 1);
    expect(lo).toBe(3200);
    expect(hi).toBe(4800);
    expect(reconnectDelayMs(q, 1, 'network', () => 0)).toBeGreaterThanOrEqual(q.minDelayMs * (1 - q.jitter));
  });
});

describe('broker URL', () => {
  it('takes mqtts:// always and mqtt:// in development only', () => {
    expect(checkBrokerUrl('mqtts://broker.example.com:8883', false)).toEqual({ ok: true, url: 'mqtts://broker.example.com:8883', label: 'mqtts://broker.example.com:8883' });
    expect(checkBrokerUrl('mqtt://127.0.0.1:1883', false)).toMatchObject({ ok: false, code: 'MQTT_PLAIN_REFUSED' });
    expect(checkBrokerUrl('mqtt://127.0.0.1:1883', true)).toMatchObject({ ok: true, label: 'mqtt://127.0.0.1:1883' });
  });
  it('refuses other schemes and garbage, and never keeps credentials from a URL', () => {
    expect(checkBrokerUrl('wss://broker.example.com/mqtt', true)).toMatchObject({ ok: false, code: 'MQTT_URL_INVALID' });
    expect(checkBrokerUrl('not a url', true)).toMatchObject({ ok: false, code: 'MQTT_URL_INVALID' });
    const c = checkBrokerUrl('mqtts://admin:hunter2@broker.example.com', false);
    expect(c.ok && c.url).toBe('mqtts://broker.example.com');
    expect(JSON.stringify(c)).not.toContain('hunter2');
    expect(brokerLabel('mqtts://u:p@broker.example.com/x?y=1')).toBe('mqtts://broker.example.com:8883');
  });
});

describe('commands', () => {
  const b = (v: unknown): Buffer => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));
  it('accepts the three commands of the schema', () => {
    expect(parseCommand(b({ type: 'unbind', id: 'c1' }))).toEqual({ ok: true, command: { type: 'unbind', id: 'c1' } });
    expect(parseCommand(b({ type: 'sync-now', id: 'c2' }))).toEqual({ ok: true, command: { type: 'sync-now', id: 'c2' } });
    expect(parseCommand(b({ type: 'set-upload-mode', id: 'c3', mode: 'events' }))).toEqual({
      ok: true,
      command: { type: 'set-upload-mode', id: 'c3', mode: 'events' },
    });
  });
  it('refuses anything else, naming a reason and never echoing the payload', () => {
    const secret = 'SSID=home-wifi;password=hunter2';
    const cases = [
      b({ type: 'reboot', id: 'c4' }),
      b({ type: 'set-upload-mode', id: 'c5', mode: secret }),
      b({ type: 'unbind', id: 'c6', extra: secret }),
      b({ type: 'unbind' }),
      b(secret),
      b('null'),
      Buffer.alloc(MAX_COMMAND_BYTES + 1, 0x20),
    ];
    const results = cases.map((c) => parseCommand(c));
    expect(results.map((r) => r.ok)).toEqual(Array(cases.length).fill(false));
    expect(results.map((r) => (r.ok ? '' : r.reason))).toEqual(['invalid', 'invalid', 'invalid', 'invalid', 'not-json', 'invalid', 'too-large']);
    expect(results[0]).toEqual({ ok: false, reason: 'invalid', type: 'reboot' });
    expect(JSON.stringify(results)).not.toContain('hunter2');
  });
});
