import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface SecretFileOptions<T> {
  /** a fresh secret, as the file holds it */
  make: () => string;
  /** the secret in the file's text, or undefined when the text holds none */
  parse: (text: string) => T | undefined;
  /** the error for a file that holds no secret (one line, naming the file, never its content) */
  bad: (file: string) => Error;
}

/**
 * A secret the cloud keeps in its data directory when the configuration gives
 * none (the URL-signing secret, the security-log key): read when the file
 * exists, else made once, mode 0600. 'wx': when two processes start at once,
 * the second reads the first's. A file that holds no secret is an error, not
 * replaced: what was signed or encrypted with it would be lost.
 */
export async function keptSecret<T>(file: string, opts: SecretFileOptions<T>): Promise<T> {
  const read = async (): Promise<T> => {
    const secret = opts.parse(await readFile(file, 'utf8'));
    if (secret === undefined) throw opts.bad(file);
    return secret;
  };
  try {
    return await read();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(dirname(file), { recursive: true });
  const text = opts.make();
  try {
    await writeFile(file, `${text}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return read();
}
