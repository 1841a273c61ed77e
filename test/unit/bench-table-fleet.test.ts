import { describe, expect, it } from 'vitest';
import { errorCodeOf } from '../../firmware-sim/fleet-http.js';
import { fleetSerials } from '../../firmware-sim/fleet-cli.js';
import { FleetStats, formatFleetTable, formatProgress, parseDuration, percentile, summarize } from '../../firmware-sim/fleet-stats.js';

describe("fleet mode's numbers and table (firmware-sim/fleet-stats.ts)", () => {
  it('percentiles are nearest-rank over the sorted latencies', () => {
    const xs = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(xs, 50)).toBe(50);
    expect(percentile(xs, 95)).toBe(95);
    expect(percentile(xs, 99)).toBe(99);
    expect(percentile(xs, 100)).toBe(100);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNull();
  });

  it('a route counts successes and failures by code; latencies are of the successes only, in any order of arrival', () => {
    const stats = new FleetStats();
    const presign = stats.route('presign');
    for (const ms of [9, 1, 5, 3, 7]) presign.ok(ms);
    presign.fail('TIMEOUT');
    presign.fail('RATE_LIMITED');
    presign.fail('TIMEOUT');
    expect(presign.count).toBe(8);
    expect(presign.succeeded).toBe(5);
    expect(presign.failed).toBe(3);
    expect(presign.percentile(50)).toBe(5);
    presign.ok(0.5);
    expect(presign.percentile(50)).toBe(3);
    expect(stats.errors).toBe(3);
  });

  it('the summary has a row per route used, rates over their phase, and errors sorted by count', () => {
    const stats = new FleetStats();
    for (let i = 0; i < 10; i++) stats.route('claim').ok(2);
    for (let i = 0; i < 60; i++) {
      stats.route('presign').ok(i);
      stats.route('PUT').ok(i * 2);
      stats.route('complete').ok(i / 2);
    }
    stats.route('PUT').fail('NETWORK');
    stats.route('PUT').fail('CONTENT_MD5_MISMATCH');
    stats.route('PUT').fail('CONTENT_MD5_MISMATCH');
    const s = summarize(stats, { devices: 12, claimSeconds: 2, runSeconds: 30, lateUploads: 1, alertsOff: null });
    expect(s.routes.map((r) => r.route)).toEqual(['claim', 'presign', 'PUT', 'complete']);
    expect(s.claimed).toBe(10);
    expect(s.uploads).toBe(60);
    expect(s.uploadsPerSecond).toBe(2);
    expect(s.errors).toBe(3);
    const claim = s.routes[0];
    expect(claim?.perSecond).toBe(5);
    const put = s.routes[2];
    expect(put?.count).toBe(63);
    expect(put?.perSecond).toBeCloseTo(63 / 30);
    expect(Object.entries(put?.errors ?? {})).toEqual([
      ['CONTENT_MD5_MISMATCH', 2],
      ['NETWORK', 1],
    ]);
    expect(put?.p95Ms).toBe(112);
  });

  it('the closing table shows count, req/s, p50/p95/p99 and errors per route, then errors by code and the totals', () => {
    const stats = new FleetStats();
    for (let i = 1; i <= 100; i++) stats.route('presign').ok(i / 10);
    stats.route('complete').fail('UPLOAD_OBJECT_MISSING');
    const table = formatFleetTable(summarize(stats, { devices: 5, claimSeconds: 1, runSeconds: 10, lateUploads: 0, alertsOff: 'no broker' }));
    const lines = table.split('\n');
    expect(lines[0]).toMatch(/^route\s+count\s+req\/s\s+p50 ms\s+p95 ms\s+p99 ms\s+errors$/);
    expect(lines[1]).toMatch(/^-+$/);
    expect(lines[2]).toMatch(/^presign\s+100\s+10\.0\s+5\.0\s+9\.5\s+9\.9\s+0$/);
    // a route with no success has no percentiles
    expect(lines[3]).toMatch(/^complete\s+1\s+0\.1\s+-\s+-\s+-\s+1$/);
    expect(table).toContain('errors by code:\n  complete: UPLOAD_OBJECT_MISSING 1');
    expect(table).toContain('0/5 devices claimed in 1.0 s; 0 uploads in 10.0 s (0.0/s), 0 late; 1 errors');
    expect(table).toContain('alerts off: no broker');
  });

  it('with alerts on, the setup line counts the MQTT connects with the claims, and the alert routes get rows', () => {
    const stats = new FleetStats();
    stats.route('claim').ok(3);
    stats.route('mqtt connect').ok(4);
    stats.route('alert publish').ok(1);
    stats.route('alert publish').fail('NOT_CONNECTED');
    const table = formatFleetTable(summarize(stats, { devices: 1, claimSeconds: 0.5, runSeconds: 10, lateUploads: 0, alertsOff: null }));
    expect(table).toContain('1/1 devices claimed and connected in 0.5 s');
    expect(table).toMatch(/^mqtt connect\s+1\s+2\.0\s+4\.0\s+4\.0\s+4\.0\s+0$/m);
    expect(table).toMatch(/^alert publish\s+2\s+0\.2\s+1\.0\s+1\.0\s+1\.0\s+1$/m);
    expect(table).toContain('  alert publish: NOT_CONNECTED 1');
    expect(table).not.toContain('alerts off');
  });

  it('the progress line says uploads a second since the last line, errors and what is in flight', () => {
    expect(formatProgress({ elapsedSeconds: 15, uploads: 1500, recentUploads: 500, recentSeconds: 5, errors: 2, inFlight: 7, alerts: 30 })).toBe(
      'fleet   15 s: 100.0 uploads/s, 1500 uploads, 2 errors, 7 in flight, 30 alerts',
    );
  });

  it('durations read as ms, s, m, h or bare seconds; anything else is refused', () => {
    expect(parseDuration('10s')).toBe(10_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('2m')).toBe(120_000);
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration('1.5')).toBe(1500);
    expect(parseDuration('10 sec')).toBeNull();
    expect(parseDuration('-1s')).toBeNull();
    expect(parseDuration('')).toBeNull();
  });

  it('a failed answer is named by its catalogue code, an S3 <Code>, or its status', () => {
    expect(errorCodeOf(429, '{"error":{"code":"RATE_LIMITED","message":"slow down"}}')).toBe('RATE_LIMITED');
    expect(errorCodeOf(400, '<?xml version="1.0"?><Error><Code>BadDigest</Code><Message>x</Message></Error>')).toBe('BadDigest');
    expect(errorCodeOf(502, '<html>bad gateway</html>')).toBe('HTTP_502');
    // a code that is not a code is not repeated
    expect(errorCodeOf(400, '{"error":{"code":"<script>"}}')).toBe('HTTP_400');
  });

  it("serials are the prefix and the device's zero-padded index, and must be valid serials", () => {
    expect(fleetSerials('FLEET', 3)).toEqual(['FLEET000000', 'FLEET000001', 'FLEET000002']);
    expect(() => fleetSerials('bad-', 2)).toThrow(/not 8-32 characters A-Z 0-9/);
  });
});
