import type { ZodError, ZodTypeAny, z } from 'zod';
import { CamvaultError } from '../../shared/errors.js';

export interface ValidationIssue {
  /** where in the input, e.g. "body.size" or "query.from" */
  path: string;
  message: string;
}

/**
 * The details of a refused input: field paths and what is wrong, never the
 * value that was sent (it may be a password or a token).
 */
export function validationIssues(err: ZodError, where?: string): ValidationIssue[] {
  return err.issues.map((issue) => {
    const path = [...(where ? [where] : []), ...issue.path].join('.') || '(root)';
    // zod's enum message quotes the received value
    const message = issue.code === 'invalid_enum_value' ? `must be one of ${issue.options.join(', ')}` : issue.message;
    return { path, message };
  });
}

export type InputPart = 'body' | 'query' | 'params';

/** Parses one part of a request with a contract schema; a failure is a 400 VALIDATION_FAILED. */
export function parseInput<S extends ZodTypeAny>(schema: S, value: unknown, where: InputPart): z.output<S> {
  const result = schema.safeParse(value ?? (where === 'body' ? undefined : {}));
  if (!result.success) {
    throw new CamvaultError('VALIDATION_FAILED', undefined, validationIssues(result.error, where));
  }
  return result.data;
}
