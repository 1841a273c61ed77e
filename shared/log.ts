import { pino, type Logger, type LoggerOptions, type DestinationStream } from 'pino';

/**
 * P11: logs hold no personal or secret data. Every logger in camvault is made
 * here, with these paths redacted. Messages must not interpolate secrets either:
 * put values in fields so redaction can see them.
 */
export const REDACT_PATHS = [
  'password',
  '*.password',
  'newPassword',
  '*.newPassword',
  'token',
  '*.token',
  'deviceToken',
  '*.deviceToken',
  'sessionToken',
  '*.sessionToken',
  'bindCode',
  '*.bindCode',
  'email',
  '*.email',
  'signedUrl',
  '*.signedUrl',
  'mqtt.password',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'headers.Authorization',
  'smtp.password',
  'smtp.user',
  // the device's email alerts (issue 7, P4): never logged by design; these catch a mistake
  'smtp',
  '*.smtp',
  'recipients',
  '*.recipients',
  'auth.pass',
  'auth.user',
  '*.auth.pass',
  '*.auth.user',
  'emailSettings',
  '*.emailSettings',
];

export function createLogger(opts: LoggerOptions & { name?: string } = {}, dest?: DestinationStream): Logger {
  const options: LoggerOptions = {
    level: process.env.CAMVAULT_LOG_LEVEL ?? 'info',
    ...opts,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
      req: (req: { method?: string; url?: string; id?: string }) => ({
        method: req.method,
        // the query of a signed URL holds its signature: never log it
        url: typeof req.url === 'string' ? req.url.split('?')[0] : undefined,
        id: req.id,
      }),
      err: pino.stdSerializers.err,
    },
  };
  return dest ? pino(options, dest) : pino(options);
}

export type { Logger };
