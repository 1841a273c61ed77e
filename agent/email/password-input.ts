/**
 * The SMTP password reaches `email set` one way only: on stdin (a pipe, a
 * file, a secret manager's output) or typed at a prompt that does not echo.
 * Never from an argument (any user sees argv in ps, and it stays in the
 * shell's history) and never from the environment (/proc/<pid>/environ, and
 * every child inherits it).
 */

const MAX_INPUT = 4096;

export class PasswordInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PasswordInputError';
  }
}

/** All of a non-TTY stdin, less one trailing line break (echo and heredocs add one). */
export async function readPasswordFromStream(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : (chunk as Buffer);
    size += b.length;
    if (size > MAX_INPUT) throw new PasswordInputError(`the password on stdin is longer than ${MAX_INPUT} bytes`);
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** Prompts on `out` and reads one line from a TTY in raw mode, echoing nothing. */
export function promptPassword(input: NodeJS.ReadStream, out: NodeJS.WritableStream, prompt = 'SMTP password: '): Promise<string> {
  return new Promise((resolve, reject) => {
    let value = '';
    // echo off before the prompt shows: nothing typed after it can reach the screen
    const wasRaw = input.isRaw;
    input.setRawMode(true);
    out.write(prompt);
    input.setEncoding('utf8');
    input.resume();
    const done = (err: Error | undefined): void => {
      input.off('data', onData);
      input.setRawMode(wasRaw);
      input.pause();
      out.write('\n');
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return done(undefined);
        if (ch === '\u0003') return done(new PasswordInputError('interrupted'));
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else if (ch >= ' ') value += ch;
        if (value.length > MAX_INPUT) return done(new PasswordInputError(`the password is longer than ${MAX_INPUT} characters`));
      }
    };
    input.on('data', onData);
  });
}

/** stdin when it is not a terminal, else the prompt. */
export function readPassword(stdin: NodeJS.ReadStream, prompt: NodeJS.WritableStream): Promise<string> {
  return stdin.isTTY ? promptPassword(stdin, prompt) : readPasswordFromStream(stdin);
}
