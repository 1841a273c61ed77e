/**
 * The pause of a long-running loop (the uploader, the storage keeper): it ends
 * after `ms`, on wake(), or when `stop` aborts. A wake() that comes while the
 * loop is busy is kept, so the next pause ends at once and no news is lost.
 */
export class Wakeup {
  private pending = false;
  private resolveCurrent: (() => void) | undefined;

  wake(): void {
    this.pending = true;
    this.resolveCurrent?.();
  }

  wait(ms: number, stop: AbortSignal): Promise<void> {
    if (this.pending || stop.aborted) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        stop.removeEventListener('abort', done);
        this.resolveCurrent = undefined;
        this.pending = false;
        resolve();
      };
      // never a zero-delay spin: at least a few ms between turns
      const timer = setTimeout(done, Math.max(5, ms));
      this.resolveCurrent = done;
      stop.addEventListener('abort', done, { once: true });
    });
  }
}

/** A real sleep that ends early (resolving) when the signal aborts. */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal.addEventListener('abort', done, { once: true });
  });
}
