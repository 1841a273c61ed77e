/**
 * The cloud's start-up check on the s3 driver, against a real S3 (Ceph RGW from
 * scripts/rgw-start.sh in CI): a bad endpoint, a missing bucket or wrong
 * credentials stop it with one clear line that never holds the secret, both
 * through startServer and when run directly as `npm run cloud` does.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCloudConfig } from '../../cloud/config.js';
import { ObjectStoreError } from '../../cloud/objects/s3.js';
import { startServer } from '../../cloud/server.js';
import { runCloud } from '../helpers/run-cloud.js';
import { s3Configured, s3EnvFromProcess, S3_SKIP_REASON } from '../helpers/s3-env.js';

if (!s3Configured) {
  describe.skip(`the cloud's start-up check on the s3 driver (${S3_SKIP_REASON})`, () => {
    it('needs a real S3', () => {});
  });
} else {
  describe("the cloud's start-up check on the s3 driver", () => {
    const good = s3EnvFromProcess();
    const secret = good.CAMVAULT_S3_SECRET_KEY as string;
    const wrongSecret = `not-the-secret-${randomBytes(8).toString('hex')}`;
    let dir: string;
    let n = 0;

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'camvault-s3-startup-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    const cases: { what: string; change: Record<string, string>; line: RegExp }[] = [
      {
        what: 'an endpoint nothing answers at',
        change: { CAMVAULT_S3_ENDPOINT: 'http://127.0.0.1:1' },
        line: /^s3 object store: cannot reach http:\/\/127\.0\.0\.1:1 \(ECONNREFUSED\): check CAMVAULT_S3_ENDPOINT$/,
      },
      {
        what: 'a bucket that does not exist',
        change: { CAMVAULT_S3_BUCKET: `camvault-missing-${randomBytes(4).toString('hex')}` },
        line: /^s3 object store: bucket "camvault-missing-[0-9a-f]{8}" at http:\/\/127\.0\.0\.1:\d+ does not exist$/,
      },
      {
        what: 'a wrong secret key',
        change: { CAMVAULT_S3_SECRET_KEY: wrongSecret },
        line: /^s3 object store: access to bucket "[^"]+" at \S+ denied \(HTTP 403\): check CAMVAULT_S3_ACCESS_KEY and CAMVAULT_S3_SECRET_KEY$/,
      },
    ];

    for (const c of cases) {
      it(`with ${c.what}, startServer rejects with one line and opens nothing, and \`npm run cloud\` prints that line and exits 1`, async () => {
        const env = { ...good, ...c.change };
        const dataDir = join(dir, `case-${++n}`);

        const config = loadCloudConfig({ env, overrides: { port: 0, dataDir, logLevel: 'silent' } });
        const err = await startServer(config).then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(ObjectStoreError);
        const message = (err as Error).message;
        expect(message).toMatch(c.line);
        expect(message).not.toContain(secret);
        expect(message).not.toContain(wrongSecret);
        // checked before the database is opened or a port taken
        expect(await readdir(dataDir)).toEqual([]);

        const run = await runCloud([], { ...env, CAMVAULT_PORT: '0', CAMVAULT_DATA_DIR: join(dataDir, 'direct') });
        expect(run.code).toBe(1);
        expect(run.stdout).toBe('');
        // exactly the one line: no stack, no SDK notice, no secret
        expect(run.stderr).toBe(`camvault cloud: cannot start: ${message}\n`);
      });
    }

    it('with the right settings, `npm run cloud` starts on the s3 driver and SIGTERM closes it cleanly', async () => {
      let sent = false;
      const run = await runCloud([], { ...good, CAMVAULT_PORT: '0', CAMVAULT_DATA_DIR: join(dir, 'good') }, (out, kill) => {
        if (!sent && out.includes('camvault cloud listening on http://127.0.0.1:')) {
          sent = true;
          kill('SIGTERM');
        }
      });
      expect(sent).toBe(true);
      expect(run.stdout).toMatch(/"objects":"s3".*"msg":"object store ready"/);
      expect(run.stdout).not.toContain(secret);
      expect(run.code).toBe(0);
      expect(run.stderr).toBe('');
    });
  });
}
