/**
 * Whether the S3 suites can run: CAMVAULT_S3_* name a real S3 (Ceph RGW from
 * scripts/rgw-start.sh in CI). Without them those suites are skipped, and their
 * skipped describe says why in one line.
 */
export const S3_ENV_NAMES = [
  'CAMVAULT_S3_ENDPOINT',
  'CAMVAULT_S3_REGION',
  'CAMVAULT_S3_BUCKET',
  'CAMVAULT_S3_ACCESS_KEY',
  'CAMVAULT_S3_SECRET_KEY',
  'CAMVAULT_S3_FORCE_PATH_STYLE',
] as const;

export const s3Configured = Boolean(process.env.CAMVAULT_S3_ENDPOINT);

/** the one-line reason a skipped S3 suite gives */
export const S3_SKIP_REASON =
  'CAMVAULT_S3_* not set: start Ceph RGW with `bash scripts/rgw-start.sh` and `source /tmp/camvault-rgw/env`';

/** only the CAMVAULT_S3_* variables of the process environment */
export function s3EnvFromProcess(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of S3_ENV_NAMES) {
    const v = process.env[name];
    if (v !== undefined && v !== '') out[name] = v;
  }
  return out;
}

/** the object-store drivers the suites can run against here: always local, s3 when configured */
export type Driver = 'local' | 's3';
export const availableDrivers: Driver[] = s3Configured ? ['local', 's3'] : ['local'];
