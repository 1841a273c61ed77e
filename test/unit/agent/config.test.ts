import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AgentConfigError, loadAgentConfig } from '../../../agent/config.js';

const dir = mkdtempSync(join(tmpdir(), 'camvault-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const good = { serial: 'SIM00000001', cloudUrl: 'https://cloud.example.com', input: 'rtsp://cam/stream' };

function fileWith(obj: unknown): string {
  const p = join(dir, `c${Math.random().toString(16).slice(2)}.json`);
  writeFileSync(p, JSON.stringify(obj));
  return p;
}

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AgentConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a config error');
}

describe('agent config', () => {
  it('fills the defaults', () => {
    const c = loadAgentConfig({ env: {}, overrides: good });
    expect(c).toMatchObject({
      serial: 'SIM00000001',
      model: 'camvault-sim',
      channel: 'main',
      segmentSeconds: 10,
      development: false,
      uploadConcurrency: 2,
      multipartPartBytes: 16 * 1024 * 1024,
      audio: 'copy',
      dataDir: resolve('.data/agent'),
    });
    expect(c.ffmpegPath).toMatch(/ffmpeg/);
  });

  it('takes the file, then the environment over it, then overrides over both', () => {
    const file = fileWith({ ...good, segmentSeconds: 6, channel: 'door' });
    const env = { CAMVAULT_AGENT_SEGMENT_SECONDS: '4', CAMVAULT_AGENT_DEVELOPMENT: 'true', FFMPEG_PATH: '/opt/ffmpeg' };
    const c = loadAgentConfig({ file, env, overrides: { channel: 'yard' } });
    expect(c).toMatchObject({ segmentSeconds: 4, development: true, channel: 'yard', ffmpegPath: '/opt/ffmpeg' });
  });

  it('names the field of a bad serial in one line', () => {
    const msg = errorOf(() => loadAgentConfig({ env: { CAMVAULT_AGENT_SERIAL: 'sim-1' }, overrides: { ...good, serial: undefined } }));
    expect(msg).toMatch(/^invalid agent config: serial: .*8-32 characters.*CAMVAULT_AGENT_SERIAL/);
    expect(msg).not.toContain('\n');
  });

  it('refuses a plain http cloud outside development, and accepts it in development', () => {
    const msg = errorOf(() => loadAgentConfig({ env: {}, overrides: { ...good, cloudUrl: 'http://cloud.example.com' } }));
    expect(msg).toMatch(/cloudUrl: must be https/);
    const dev = loadAgentConfig({ env: {}, overrides: { ...good, cloudUrl: 'http://127.0.0.1:8080/', development: true } });
    expect(dev.cloudUrl).toBe('http://127.0.0.1:8080');
  });

  it('names the field for a number that is not one, an unknown field and an unreadable file', () => {
    expect(errorOf(() => loadAgentConfig({ env: { CAMVAULT_AGENT_SEGMENT_SECONDS: 'ten' }, overrides: good }))).toMatch(/segmentSeconds/);
    expect(errorOf(() => loadAgentConfig({ env: {}, file: fileWith({ ...good, segmentSecs: 5 }) }))).toMatch(/unknown field "segmentSecs"/);
    expect(errorOf(() => loadAgentConfig({ env: {}, file: join(dir, 'missing.json') }))).toMatch(/cannot read config file .*ENOENT/);
    expect(errorOf(() => loadAgentConfig({ env: {}, overrides: { ...good, bindCode: 'nope' } }))).toMatch(/^invalid agent config: bindCode/);
    expect(errorOf(() => loadAgentConfig({ env: {}, overrides: { ...good, eventsUrl: 'http://x' } }))).toMatch(/eventsUrl/);
  });

  it('takes a multipart part size of at least 5 MiB, S3\'s smallest part, from the environment too', () => {
    expect(loadAgentConfig({ env: { CAMVAULT_AGENT_MULTIPART_PART_BYTES: '5242880' }, overrides: good }).multipartPartBytes).toBe(5 * 1024 * 1024);
    expect(errorOf(() => loadAgentConfig({ env: {}, overrides: { ...good, multipartPartBytes: 1024 * 1024 } }))).toMatch(
      /^invalid agent config: multipartPartBytes: must be at least 5 MiB/,
    );
  });
});
