/**
 * vitest's globalSetup: says once, up front, which suites cannot run here and
 * why (DESIGN.md, "Commands": a suite that needs a service that is not
 * configured says so in one line). Each skipped suite also names the reason in
 * its own title.
 */
import { s3Configured, S3_SKIP_REASON } from './helpers/s3-env.js';

export default function setup(): void {
  if (!s3Configured) console.log(`S3 suites skipped (s3 driver contract, s3 start-up, e2e on s3): ${S3_SKIP_REASON}`);
}
