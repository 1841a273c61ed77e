/**
 * Pure parts of the jobs: their settings (config `jobs`, CAMVAULT_JOBS_ENABLED,
 * CAMVAULT_RETENTION_CRON, CAMVAULT_SWEEP_CRON) and how the sweep reads a
 * clip id out of an object key.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, loadCloudConfig } from '../../cloud/config.js';
import { clipIdOfKey } from '../../cloud/jobs/sweep.js';
import { newClipId } from '../../shared/ids.js';
import { clipObjectKey } from '../../shared/keys.js';

describe('jobs settings', () => {
  it('default to retention every minute and the sweep hourly, batches of 1000 and a day before anything is an orphan', () => {
    expect(loadCloudConfig({ env: {} }).jobs).toEqual({
      enabled: true,
      retentionCron: '* * * * *',
      sweepCron: '17 * * * *',
      retentionBatch: 1000,
      retentionConcurrency: 4,
      retentionLeaseSec: 120,
      orphanAgeHours: 24,
      receiptDays: 90,
    });
  });

  it('come from the environment over the file, and from overrides', () => {
    const env = { CAMVAULT_JOBS_ENABLED: 'false', CAMVAULT_RETENTION_CRON: '*/5 * * * *', CAMVAULT_SWEEP_CRON: '30 3 * * *' };
    expect(loadCloudConfig({ env }).jobs).toMatchObject({ enabled: false, retentionCron: '*/5 * * * *', sweepCron: '30 3 * * *' });
    expect(loadCloudConfig({ env: { CAMVAULT_JOBS_ENABLED: '1' } }).jobs.enabled).toBe(true);
    expect(loadCloudConfig({ env: {}, overrides: { jobs: { retentionCron: '*/2 * * * * *', retentionBatch: 50 } } }).jobs).toMatchObject({
      retentionCron: '*/2 * * * * *',
      retentionBatch: 50,
      sweepCron: '17 * * * *',
    });
  });

  it('refuse a wrong value with one line naming the setting', () => {
    const line = (f: () => unknown): string => {
      try {
        f();
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as Error).message;
      }
      throw new Error('no error');
    };
    expect(line(() => loadCloudConfig({ env: { CAMVAULT_RETENTION_CRON: 'every minute' } }))).toBe(
      'invalid config: jobs.retentionCron: must be a cron expression (5 fields, or 6 with seconds first)',
    );
    expect(line(() => loadCloudConfig({ env: { CAMVAULT_JOBS_ENABLED: 'sometimes' } }))).toBe(
      'invalid config: CAMVAULT_JOBS_ENABLED must be true or false',
    );
    // S3's DeleteObjects takes at most 1000 keys
    expect(line(() => loadCloudConfig({ env: {}, overrides: { jobs: { retentionBatch: 1001 } } }))).toMatch(/^invalid config: jobs\.retentionBatch: /);
    expect(line(() => loadCloudConfig({ env: {}, overrides: { jobs: { retentionLeaseSec: 1 } } }))).toMatch(/^invalid config: jobs\.retentionLeaseSec: /);
  });
});

describe('the sweep reads clip ids out of keys', () => {
  it('finds the clip id of every key the cloud makes, and none in any other key', () => {
    const id = newClipId(Date.parse('2026-03-04T05:06:07Z'));
    const key = clipObjectKey('01HZZZZZZZZZZZZZZZZZZZZZZZ', 'CAM12345', id, Date.parse('2026-03-04T05:06:07Z'));
    expect(clipIdOfKey(key)).toBe(id);
    for (const other of [
      'accounts/01HZZZZZZZZZZZZZZZZZZZZZZZ/devices/CAM12345/notes.bin',
      `accounts/01HZZZZZZZZZZZZZZZZZZZZZZZ/devices/CAM12345/2026/03/04/${id.toLowerCase()}.mp4`,
      `accounts/01HZZZZZZZZZZZZZZZZZZZZZZZ/devices/CAM12345/2026/03/04/${id}.mp4.tmp`,
      `${id}.mp4`,
      'accounts/x/devices/y/2026/03/04/NOTAULIDNOTAULIDNOTAULID00.mp4',
    ]) {
      expect(clipIdOfKey(other), other).toBeNull();
    }
  });
});
