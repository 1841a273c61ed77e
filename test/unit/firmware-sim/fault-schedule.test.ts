import { afterEach, describe, expect, it, vi } from 'vitest';
import { AgentConfigError, loadAgentConfig } from '../../../agent/config.js';
import { CLOCK_SKEW_ENV, describeSkew, parseSkew } from '../../../firmware-sim/faults/clock-skew.js';
import { formatDuration, parseBytes, parseDuration, parseSignedDuration } from '../../../firmware-sim/faults/durations.js';
import { faultBody, requestKind, rewriteOrigins } from '../../../firmware-sim/faults/fault-proxy.js';
import { parseQuota, quotaConfig } from '../../../firmware-sim/faults/full-disk.js';
import { FaultScheduler, FaultSyntaxError, describeFault, parseCommand, parseFaultSpec, type FaultSpec } from '../../../firmware-sim/faults/schedule.js';
import { ErrorResponse } from '../../../shared/contracts/common.js';
import { errorCatalogue } from '../../../shared/errors.js';

describe('fault durations and sizes', () => {
  it('reads durations with units, and a bare number as seconds', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('30')).toBe(30_000);
    expect(parseDuration('1.5h')).toBe(5_400_000);
    expect(parseDuration('2m')).toBe(120_000);
    expect(parseDuration('7d')).toBe(604_800_000);
    for (const bad of ['', 's', '-3s', '3 s', '3x', '1e3', 'every3s']) expect(parseDuration(bad), bad).toBeNull();
  });

  it('reads signed skews and refuses more than a year', () => {
    expect(parseSignedDuration('+2h')).toBe(7_200_000);
    expect(parseSignedDuration('-8d')).toBe(-691_200_000);
    expect(parseSkew('0')).toBe(0);
    expect(parseSkew('+366d')).toBeNull();
    expect(parseSkew('2h')).toBe(7_200_000);
    expect(parseSkew('+-2h')).toBeNull();
  });

  it('says whether the cloud takes a skew: up to 5 minutes ahead and 7 days behind', () => {
    expect(describeSkew(0)).toBe('the right time');
    expect(describeSkew(4 * 60_000)).toMatch(/within what the cloud accepts/);
    expect(describeSkew(6 * 60_000)).toMatch(/refuses/);
    expect(describeSkew(-6 * 86_400_000)).toMatch(/within what the cloud accepts/);
    expect(describeSkew(-8 * 86_400_000)).toMatch(/refuses/);
  });

  it('formats durations in the shortest exact unit', () => {
    expect(formatDuration(7_200_000)).toBe('2h');
    expect(formatDuration(-691_200_000)).toBe('-8d');
    expect(formatDuration(1500)).toBe('1.5s');
    expect(formatDuration(90_000)).toBe('90s');
    expect(formatDuration(250)).toBe('250ms');
  });

  it('reads byte counts, and a quota of at least 10000 bytes', () => {
    expect(parseBytes('300000')).toBe(300_000);
    expect(parseBytes('300k')).toBe(300_000);
    expect(parseBytes('300K')).toBe(307_200);
    expect(parseBytes('2M')).toBe(2 * 1024 * 1024);
    expect(parseBytes('x')).toBeNull();
    expect(parseQuota('9999')).toBeNull();
    expect(parseQuota('10k')).toBe(10_000);
    expect(quotaConfig(250_000)).toEqual({ storage: { maxBytes: 250_000 } });
    expect(quotaConfig(undefined)).toEqual({});
  });
});

describe('--fault specs', () => {
  it('reads once, every, a camera, a value and a duration', () => {
    const outage = parseFaultSpec('outage@30s+20s');
    expect(outage).toMatchObject({ name: 'outage', atMs: 30_000, forMs: 20_000 });
    expect(outage.camera).toBeUndefined();
    expect(outage.everyMs).toBeUndefined();
    expect(parseFaultSpec('power-cut#2@60s')).toMatchObject({ name: 'power-cut', camera: 2, atMs: 60_000, forMs: 2000 });
    const crash = parseFaultSpec('ffmpeg-crash@every90s');
    expect(crash).toMatchObject({ name: 'ffmpeg-crash', atMs: 90_000, everyMs: 90_000, value: 'SIGKILL' });
    expect(crash.forMs).toBeUndefined();
    expect(parseFaultSpec('ffmpeg-crash=segv@10s').value).toBe('SIGSEGV');
    expect(parseFaultSpec('cloud-5xx=502@40s+15s')).toMatchObject({ name: 'cloud-5xx', value: 502, atMs: 40_000, forMs: 15_000 });
    expect(parseFaultSpec('cloud-5xx@1m')).toMatchObject({ value: 503, forMs: 20_000 });
    expect(parseFaultSpec('slow=3s@every2m+30s')).toMatchObject({ name: 'slow', value: 3000, everyMs: 120_000, forMs: 30_000 });
    expect(parseFaultSpec('stall#1@50s+10s')).toMatchObject({ name: 'stall', camera: 1, forMs: 10_000 });
    // skew and full-disk without a schedule: from the start, for good
    const skew = parseFaultSpec('skew=+2h');
    expect(skew).toMatchObject({ name: 'skew', value: 7_200_000, atMs: 0 });
    expect(skew.forMs).toBeUndefined();
    expect(parseFaultSpec('skew=-8d@1m+5m')).toMatchObject({ value: -691_200_000, atMs: 60_000, forMs: 300_000 });
    const disk = parseFaultSpec('full-disk=300k');
    expect(disk).toMatchObject({ name: 'full-disk', value: 300_000 });
    expect(disk.forMs).toBeUndefined();
  });

  it('refuses what it cannot read, with the reason', () => {
    const bad: [string, RegExp][] = [
      ['flood@10s', /unknown fault "flood"/],
      ['outage@soon', /AT must be a duration/],
      ['outage@every500ms', /PERIOD must be at least 1s/],
      ['outage@every10s+20s', /FOR must be shorter than PERIOD/],
      ['ffmpeg-crash@10s+5s', /instant/],
      ['ffmpeg-crash=SIGHUP', /the signal/],
      ['cloud-5xx=404', /the status/],
      ['skew', /needs =VALUE/],
      ['skew=+400d', /clock skew/],
      ['full-disk=10', /quota/],
      ['outage=3', /takes no =VALUE/],
      ['outage#0', /counts from 1/],
      ['Outage@1s', /expected NAME/],
    ];
    for (const [text, why] of bad) {
      expect(() => parseFaultSpec(text), text).toThrow(FaultSyntaxError);
      expect(() => parseFaultSpec(text), text).toThrow(why);
    }
  });

  it('reads stdin commands: a fault now, a scheduled one, and the rest', () => {
    expect(parseCommand('outage 20')).toEqual({ kind: 'fault', fault: expect.objectContaining({ name: 'outage', atMs: 0, forMs: 20_000 }) });
    expect(parseCommand('power-cut 2')).toEqual({ kind: 'fault', fault: expect.objectContaining({ name: 'power-cut', forMs: 2000 }) });
    expect(parseCommand('stall#2 3')).toEqual({ kind: 'fault', fault: expect.objectContaining({ name: 'stall', camera: 2, forMs: 3000 }) });
    const skew = parseCommand('  skew=0  ');
    expect(skew).toEqual({ kind: 'fault', fault: expect.objectContaining({ name: 'skew', value: 0, atMs: 0, text: 'skew=0' }) });
    expect(skew.kind === 'fault' && skew.fault.forMs).toBeUndefined();
    expect(parseCommand('outage@5s+1s')).toEqual({ kind: 'fault', fault: expect.objectContaining({ atMs: 5000, forMs: 1000 }) });
    expect(parseCommand('status')).toEqual({ kind: 'status' });
    expect(parseCommand('quit')).toEqual({ kind: 'stop' });
    expect(parseCommand('')).toEqual({ kind: 'empty' });
    expect(() => parseCommand('outage 20 30')).toThrow(FaultSyntaxError);
    expect(() => parseCommand('ffmpeg-crash 5')).toThrow(/instant/);
  });

  it('describes a fault in one line', () => {
    expect(describeFault(parseFaultSpec('power-cut#2@60s+5s'))).toBe('power-cut on camera 2, power back after 5s at +1m');
    expect(describeFault(parseFaultSpec('cloud-5xx=502@every2m+15s'))).toBe('cloud-5xx HTTP 502 on every camera for 15s every 2m');
  });
});

describe('the fault proxy, pure parts', () => {
  it('names device requests by method and path', () => {
    expect(requestKind('POST', '/v1/device/uploads')).toBe('presign');
    expect(requestKind('POST', '/v1/device/uploads/01ABC/complete')).toBe('complete');
    expect(requestKind('PUT', '/objects/accounts/x')).toBe('put');
    expect(requestKind('POST', '/v1/device/claim')).toBe('claim');
    expect(requestKind('GET', '/v1/device/config')).toBe('config');
    expect(requestKind('GET', '/v1/clips')).toBe('other');
  });

  it('answers a 5xx in the shape of the error catalogue, with a code the catalogue has', () => {
    for (const status of [500, 502, 503, 504] as const) {
      const body = ErrorResponse.parse(JSON.parse(faultBody(status)));
      expect(Object.keys(errorCatalogue)).toContain(body.error.code);
    }
    expect(ErrorResponse.parse(JSON.parse(faultBody(503))).error.code).toBe('SHUTTING_DOWN');
  });

  it('rewrites URLs on the given origins anywhere in a JSON answer, and leaves the rest', () => {
    const answer = {
      mode: 'multipart',
      url: 'http://127.0.0.1:8080/objects/a?sig=1',
      parts: [{ url: 'http://127.0.0.1:8080/objects/a?part=1' }, { url: 'https://s3.example.com/bucket/a?part=2' }],
      note: 'http://127.0.0.1:80800/not-the-origin',
      n: 3,
    };
    expect(rewriteOrigins(answer, ['http://127.0.0.1:8080'], 'http://127.0.0.1:9999')).toEqual({
      mode: 'multipart',
      url: 'http://127.0.0.1:9999/objects/a?sig=1',
      parts: [{ url: 'http://127.0.0.1:9999/objects/a?part=1' }, { url: 'https://s3.example.com/bucket/a?part=2' }],
      note: 'http://127.0.0.1:80800/not-the-origin',
      n: 3,
    });
  });
});

describe('the fault scheduler', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('fires once at AT, repeats every PERIOD, skips an occurrence while the last one runs, and stops', async () => {
    vi.useFakeTimers();
    const fired: string[] = [];
    const skipped: string[] = [];
    const ends: (() => void)[] = [];
    const scheduler = new FaultScheduler(
      (f: FaultSpec) => {
        fired.push(f.text);
        // the periodic one lasts until the test ends it
        return f.everyMs ? new Promise<void>((resolve) => ends.push(resolve)) : Promise.resolve();
      },
      (f) => skipped.push(f.text),
    );
    scheduler.add(parseFaultSpec('outage@5s+1s'));
    scheduler.add(parseFaultSpec('ffmpeg-crash@every10s'));
    await vi.advanceTimersByTimeAsync(4999);
    expect(fired).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(fired).toEqual(['outage@5s+1s']);
    await vi.advanceTimersByTimeAsync(5000);
    expect(fired).toEqual(['outage@5s+1s', 'ffmpeg-crash@every10s']);
    // the first crash has not ended: the one due at 20 s is skipped
    await vi.advanceTimersByTimeAsync(10_000);
    expect(skipped).toEqual(['ffmpeg-crash@every10s']);
    ends.shift()?.();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(fired.filter((t) => t.startsWith('ffmpeg-crash'))).toHaveLength(2);
    scheduler.stop();
    ends.shift()?.();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(fired).toHaveLength(3);
  });
});

describe('the clock-skew fault in the agent config', () => {
  const base = { serial: 'SIMSKEW00001', cloudUrl: 'http://127.0.0.1:8080', input: 'tcp://127.0.0.1:9', ffmpegPath: '/bin/true' };

  it('is taken with development: true, from the config or CAMVAULT_AGENT_CLOCK_SKEW_MS, either way', () => {
    expect(loadAgentConfig({ env: {}, overrides: { ...base, development: true, clockSkewMs: 7_200_000 } }).clockSkewMs).toBe(7_200_000);
    expect(loadAgentConfig({ env: { [CLOCK_SKEW_ENV]: '-691200000' }, overrides: { ...base, development: true } }).clockSkewMs).toBe(-691_200_000);
    expect(loadAgentConfig({ env: {}, overrides: { ...base, development: true } }).clockSkewMs).toBe(0);
  });

  it('is refused on a real device (no development), with one line naming the field', () => {
    const https = { ...base, cloudUrl: 'https://cloud.example.com' };
    expect(() => loadAgentConfig({ env: {}, overrides: { ...https, clockSkewMs: 60_000 } })).toThrow(AgentConfigError);
    expect(() => loadAgentConfig({ env: {}, overrides: { ...https, clockSkewMs: 60_000 } })).toThrow(/clockSkewMs: is a simulator fault/);
    expect(loadAgentConfig({ env: {}, overrides: { ...https, clockSkewMs: 0 } }).clockSkewMs).toBe(0);
  });
});
