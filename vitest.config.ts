import { defineConfig } from 'vitest/config';

// CI sets CAMVAULT_VITEST_JSON to a path: the JSON results there are what
// .ci/run counts for its closing "N passed, N failed" line.
const jsonOut = process.env.CAMVAULT_VITEST_JSON;

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // prints one line when the S3 suites are skipped, and why
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // 2-core machines: tests that run ffmpeg must not starve each other
    maxWorkers: 2,
    reporters: jsonOut ? ['default', ['json', { outputFile: jsonOut }]] : ['default'],
  },
});
