/**
 * This node's open notification streams (SSE), by account. Each node tells
 * its own connected subscribers; nothing here is shared between nodes (the
 * notifications table is what nodes share).
 */
import type { Notification } from '../../shared/contracts/alerts.js';

export interface StreamSink {
  push(n: Notification): void;
  /** the server is closing: end the response */
  close(): void;
}

export class NotificationHub {
  private readonly streams = new Map<string, Set<StreamSink>>();
  private closed = false;

  /** registers a stream; the function it returns unregisters it */
  add(accountId: string, sink: StreamSink): () => void {
    if (this.closed) {
      sink.close();
      return () => undefined;
    }
    let set = this.streams.get(accountId);
    if (!set) {
      set = new Set();
      this.streams.set(accountId, set);
    }
    set.add(sink);
    return () => {
      const s = this.streams.get(accountId);
      if (!s) return;
      s.delete(sink);
      if (s.size === 0) this.streams.delete(accountId);
    };
  }

  /** open streams of the account on this node */
  count(accountId: string): number {
    return this.streams.get(accountId)?.size ?? 0;
  }

  get total(): number {
    let n = 0;
    for (const s of this.streams.values()) n += s.size;
    return n;
  }

  publish(accountIds: Iterable<string>, n: Notification): number {
    let sent = 0;
    for (const id of accountIds) {
      for (const sink of this.streams.get(id) ?? []) {
        sink.push(n);
        sent++;
      }
    }
    return sent;
  }

  /** ends every stream (server shutdown: an open SSE response must not hold close()) */
  closeAll(): void {
    this.closed = true;
    for (const set of this.streams.values()) for (const sink of [...set]) sink.close();
    this.streams.clear();
  }
}
