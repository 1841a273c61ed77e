/**
 * The journal's side of issue 7 (agent/journal/journal.ts, real SQLite in a
 * temp folder): the alert outbox (ordered, bounded, durable), the upload mode
 * (the queue query and the pure rule agree), and an unbind (credentials
 * wiped, the queue dropped without counting lost footage, a rebind).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ALERT_STATS, Journal, LOCAL_ONLY_EVICTED_STAT, UNBOUND_CLIPS_STAT, type NewClip } from '../../../agent/journal/journal.js';
import { uploadOrder } from '../../../agent/uploader/upload-order.js';
import { ManualClock } from '../../../shared/clock.js';
import { newClipId } from '../../../shared/ids.js';

const T0 = Date.parse('2026-05-01T08:00:00Z');
let dir: string;
let clock: ManualClock;

function clip(startMs: number, kind: 'event' | 'continuous' = 'continuous'): NewClip {
  const id = newClipId(startMs);
  return { id, channel: 'main', path: join(dir, `${id}.mp4`), startMs, durationMs: 10_000, size: 1000, md5: 'AAAAAAAAAAAAAAAAAAAAAA==', sha256: 'a'.repeat(64), kind };
}

const creds = (token = 'tok') => ({ serial: 'CAM00000001', deviceToken: token, mqtt: { username: 'CAM00000001', password: 'secret-mqtt' }, claimedAt: T0 });

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'camvault-outbox-'));
  clock = new ManualClock(T0);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('alert outbox in the journal', () => {
  it('keeps alerts in the order of their motions, across a reopen, until each is delivered', () => {
    let j = Journal.open(dir, { clock });
    const seqs = [T0 + 1, T0 + 2, T0 + 3].map((at) => j.addAlert({ type: 'motion', atMs: at, sendAfter: at }, 10).seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    j.close();
    // a restart (or a power cut: every addAlert was a committed transaction)
    j = Journal.open(dir, { clock });
    expect(j.alertsInOrder(10).map((a) => a.atMs)).toEqual([T0 + 1, T0 + 2, T0 + 3]);
    expect(j.alertsInOrder(10, seqs[0]).map((a) => a.seq)).toEqual(seqs.slice(1));
    j.alertDelivered(seqs[1] as number);
    j.alertDelivered(seqs[1] as number); // a second PUBACK for the same row counts once
    expect(j.alertsInOrder(10).map((a) => a.atMs)).toEqual([T0 + 1, T0 + 3]);
    expect(j.alertOutboxSize()).toBe(2);
    expect(j.stats()[ALERT_STATS.sent]?.n).toBe(1);
    j.close();
  });

  it('is bounded: when full, the oldest alerts go and are counted as dropped', () => {
    const j = Journal.open(dir, { clock });
    const dropped: number[] = [];
    for (let i = 0; i < 8; i++) dropped.push(j.addAlert({ type: 'motion', atMs: T0 + i, sendAfter: T0 + i }, 5).dropped);
    expect(dropped).toEqual([0, 0, 0, 0, 0, 1, 1, 1]);
    expect(j.alertOutboxSize()).toBe(5);
    expect(j.alertsInOrder(10).map((a) => a.atMs - T0)).toEqual([3, 4, 5, 6, 7]);
    expect(j.stats()[ALERT_STATS.dropped]?.n).toBe(3);
    j.close();
  });

  it("gives an event clip's id to the alerts of the motions it holds, and only to those without one", () => {
    const j = Journal.open(dir, { clock });
    for (const at of [T0 - 5000, T0 + 1000, T0 + 9000, T0 + 30_000]) j.addAlert({ type: 'motion', atMs: at, sendAfter: at }, 10);
    const first = newClipId(T0);
    expect(j.attachAlertClip(first, T0 - 1000, T0 + 11_000)).toBe(2);
    const second = newClipId(T0 + 5000);
    expect(j.attachAlertClip(second, T0, T0 + 40_000)).toBe(1);
    expect(j.alertsInOrder(10).map((a) => a.clipId)).toEqual([null, first, first, second]);
    j.close();
  });

  it('an unbind empties the outbox and wipes the credentials in one step', () => {
    const j = Journal.open(dir, { clock });
    j.setCredentials(creds());
    j.addAlert({ type: 'motion', atMs: T0, sendAfter: T0 }, 10);
    j.markUnbound({ at: T0 + 5, commandId: 'cmd-1', bindCodeSha256: null });
    expect(j.getCredentials()).toBeUndefined();
    expect(j.alertOutboxSize()).toBe(0);
    expect(j.unboundRecord()).toEqual({ at: T0 + 5, commandId: 'cmd-1', bindCodeSha256: null });
    j.close();
    // read-only, as `agent status` opens it
    const ro = Journal.open(dir, { readonly: true });
    expect(ro.unboundRecord()?.at).toBe(T0 + 5);
    expect(ro.getCredentials()).toBeUndefined();
    ro.close();
  });
});

describe('upload mode in the journal', () => {
  it("in 'events' hands out event clips only, in upload order, and waits for no continuous retry", () => {
    const j = Journal.open(dir, { clock });
    const all = [clip(T0 - 50_000), clip(T0 - 40_000, 'event'), clip(T0 - 30_000), clip(T0 - 20_000, 'event'), clip(T0 - 10_000)].map((c) => j.addClip(c));
    expect(j.uploadMode()).toBe('continuous');
    j.setUploadMode('events');
    expect(j.uploadMode()).toBe('events');
    const eventsOnly = { eventsOnly: true };
    expect(j.nextToUpload(10, [], eventsOnly).map((c) => c.id)).toEqual(uploadOrder(all, 'events').map((c) => c.id));
    expect(j.nextToUpload(10, [], eventsOnly).every((c) => c.kind === 'event')).toBe(true);
    expect(j.nextToUpload(10).map((c) => c.id)).toEqual(uploadOrder(all, 'continuous').map((c) => c.id));
    // a continuous clip waiting out a retry delay wakes nobody in 'events' (else the loop would spin on it)
    const cont = all[0] as { id: string };
    j.markUploading(cont.id);
    j.markQueued(cont.id, { notBeforeMs: T0 + 60_000 });
    expect(j.nextDueAt(eventsOnly)).toBeUndefined();
    expect(j.nextDueAt()).toBe(T0 + 60_000);
    j.close();
  });

  it('a continuous clip the ring buffer evicts in events mode is kept-on-device footage, not lost footage', () => {
    const j = Journal.open(dir, { clock });
    const cont = j.addClip(clip(T0 - 20_000));
    const ev = j.addClip(clip(T0 - 10_000, 'event'));
    j.setUploadMode('events');
    const rec = j.markEvicted([cont.id, ev.id]);
    expect(rec.evictedClips).toBe(2);
    // the event clip was meant for the cloud: that one is lost
    expect(rec.lostIds).toEqual([ev.id]);
    expect(j.getClip(cont.id)).toMatchObject({ state: 'lost', lastErrorCode: 'LOCAL_ONLY' });
    expect(j.stats().lost_clips?.n).toBe(1);
    expect(j.stats()[LOCAL_ONLY_EVICTED_STAT]?.n).toBe(1);
    j.close();
  });

  it('clears retry delays for sync-now', () => {
    const j = Journal.open(dir, { clock });
    const c = j.addClip(clip(T0 - 1000));
    j.markUploading(c.id);
    j.markQueued(c.id, { notBeforeMs: T0 + 300_000 });
    expect(j.nextToUpload(5)).toEqual([]);
    expect(j.clearRetryDelays()).toBe(1);
    expect(j.nextToUpload(5).map((r) => r.id)).toEqual([c.id]);
    j.close();
  });
});

describe('unbind and rebind in the journal', () => {
  it('drops the queue as UNBOUND without counting lost footage; a rebind drops what was recorded meanwhile and stores the new credentials', () => {
    const j = Journal.open(dir, { clock });
    j.setCredentials(creds('old'));
    const queued = j.addClip(clip(T0 - 30_000));
    const failed = j.addClip(clip(T0 - 20_000, 'event'));
    j.markFailed(failed.id, 'CLIP_TOO_LARGE');
    const uploaded = j.addClip(clip(T0 - 10_000));
    j.markUploaded(uploaded.id);
    j.markUnbound({ at: T0, commandId: 'c', bindCodeSha256: null });
    expect(j.dropUploadQueue('UNBOUND')).toBe(2);
    expect(j.getClip(queued.id)).toMatchObject({ state: 'lost', lastErrorCode: 'UNBOUND' });
    expect(j.getClip(failed.id)).toMatchObject({ state: 'lost', lastErrorCode: 'UNBOUND' });
    expect(j.getClip(uploaded.id)?.state).toBe('uploaded');
    expect(j.stats().lost_clips).toBeUndefined();
    expect(j.stats()[UNBOUND_CLIPS_STAT]?.n).toBe(2);
    // recorded while unbound: the ring buffer's eviction of it is not lost footage either
    const meanwhile = j.addClip(clip(T0 + 10_000));
    const evictedMeanwhile = j.addClip(clip(T0 + 20_000, 'event'));
    expect(j.markEvicted([evictedMeanwhile.id]).lostClips).toBe(0);
    // a new bind code: nothing recorded before goes to the new owner
    expect(j.rebind(creds('new'))).toBe(1);
    expect(j.getClip(meanwhile.id)?.state).toBe('lost');
    expect(j.unboundRecord()).toBeUndefined();
    expect(j.getCredentials()?.deviceToken).toBe('new');
    expect(j.nextToUpload(10)).toEqual([]);
    j.close();
  });
});
