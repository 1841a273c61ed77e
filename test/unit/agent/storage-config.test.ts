import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AgentConfigError, loadAgentConfig } from '../../../agent/config.js';

const dir = mkdtempSync(join(tmpdir(), 'camvault-storage-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const good = { serial: 'SIM00000001', cloudUrl: 'https://cloud.example.com', input: 'rtsp://cam/stream' };

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AgentConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a config error');
}

describe('agent config: ring buffer and bandwidth', () => {
  it('defaults to a quota from the disk, a 256 MiB reserve and no bandwidth cap', () => {
    const c = loadAgentConfig({ env: {}, overrides: good });
    expect(c.storage).toEqual({ minFreeBytes: 256 * 1024 * 1024 });
    expect(c.uploadBytesPerSec).toBe(0);
    expect(c.uploadBurstBytes).toBeUndefined();
  });

  it('takes the quota and reserve from the file, and the cap from the environment', () => {
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ ...good, storage: { maxBytes: 8_000_000_000, minFreeBytes: 0 } }));
    const c = loadAgentConfig({ file, env: { CAMVAULT_AGENT_UPLOAD_BYTES_PER_SEC: '125000', CAMVAULT_AGENT_UPLOAD_BURST_BYTES: '250000' } });
    expect(c.storage).toEqual({ maxBytes: 8_000_000_000, minFreeBytes: 0 });
    expect(c).toMatchObject({ uploadBytesPerSec: 125_000, uploadBurstBytes: 250_000 });
  });

  it('takes the quota and reserve from the environment too, over the file, each on its own', () => {
    const file = join(dir, 'e.json');
    writeFileSync(file, JSON.stringify({ ...good, storage: { maxBytes: 8_000_000_000, minFreeBytes: 0 } }));
    expect(loadAgentConfig({ file, env: { CAMVAULT_AGENT_STORAGE_MAX_BYTES: '2000000000' } }).storage).toEqual({ maxBytes: 2_000_000_000, minFreeBytes: 0 });
    expect(loadAgentConfig({ env: { CAMVAULT_AGENT_STORAGE_MIN_FREE_BYTES: '1000' }, overrides: good }).storage).toEqual({ minFreeBytes: 1000 });
    expect(errorOf(() => loadAgentConfig({ env: { CAMVAULT_AGENT_STORAGE_MAX_BYTES: 'lots' }, overrides: good }))).toMatch(
      /^invalid agent config: storage\.maxBytes: .*\(from CAMVAULT_AGENT_STORAGE_MAX_BYTES\)$/,
    );
  });

  it('names the field of a bad value in one line', () => {
    expect(errorOf(() => loadAgentConfig({ env: {}, overrides: { ...good, storage: { maxBytes: 0 } } }))).toMatch(
      /^invalid agent config: storage\.maxBytes: must be more than 0/,
    );
    expect(errorOf(() => loadAgentConfig({ env: {}, overrides: { ...good, storage: { minFreeBytes: -1 } } }))).toMatch(/storage\.minFreeBytes: must be 0 or more/);
    expect(errorOf(() => loadAgentConfig({ env: {}, overrides: { ...good, storage: { maxBytes: 1.5 } } }))).toMatch(/storage\.maxBytes: must be a whole number/);
    expect(errorOf(() => loadAgentConfig({ env: { CAMVAULT_AGENT_UPLOAD_BYTES_PER_SEC: '100' }, overrides: good }))).toMatch(
      /uploadBytesPerSec: must be 0 \(no cap\) or at least 1024 \(from CAMVAULT_AGENT_UPLOAD_BYTES_PER_SEC\)/,
    );
    expect(errorOf(() => loadAgentConfig({ env: {}, overrides: { ...good, storage: { maxBytes: 1, quota: 2 } as never } }))).toMatch(/unknown field "quota"/);
  });
});
