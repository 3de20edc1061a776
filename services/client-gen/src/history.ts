/**
 * What each key (a db key, a file name) may hold, from the writes this client sent and
 * what it learned of them, so a read can be checked against it. Reads and writes of a key
 * overlap under load, and a write whose reply never came may still land, so a read is
 * checked against every value it could legitimately see, never just the last one acked:
 * a reported integrity failure is always a real one.
 *
 * Assumes the server applies a key's writes in the order it receives them and that a
 * reply means the request is done (a write sent after a reply arrived lands after it).
 */

/** How a reply's content was checked. */
export type Verdict = { readonly checked: false } | { readonly checked: true; readonly problem: string | undefined };
export const UNCHECKED: Verdict = { checked: false };
export const GOOD: Verdict = { checked: true, problem: undefined };

/** One write of a key; the digest of a write may only be known once it is acked (files). */
export interface Write {
  digest: string | undefined;
  readonly sentSeq: number;
  /** When its outcome became known (ack or error reply); undefined while it may still land. */
  resolvedSeq: number | undefined;
}

/** A read in flight: the writes whose value it may return. */
export interface Read {
  readonly candidates: Set<Write>;
}

interface Slot {
  /** Writes not yet superseded by a later acked one. */
  readonly writes: Set<Write>;
  /** Some write was acked, so whatever the key held before this client is gone. */
  acked: boolean;
  readonly reads: Set<Read>;
}

export class History {
  private seq = 0;
  private readonly slots = new Map<string, Slot>();

  write(key: string, digest: string | undefined): Write {
    const s = this.slot(key);
    const w: Write = { digest, sentSeq: ++this.seq, resolvedSeq: undefined };
    s.writes.add(w);
    // A read already in flight may see a write sent after it.
    for (const r of s.reads) r.candidates.add(w);
    return w;
  }

  /** The write is durable; `digest` is what the server reported when it was unknown before. */
  acked(key: string, w: Write, digest?: string): void {
    const s = this.slot(key);
    if (!s.writes.has(w)) return;
    if (digest !== undefined) w.digest = digest;
    w.resolvedSeq = ++this.seq;
    s.acked = true;
    // Writes that were over before this one was sent can no longer be read.
    for (const x of s.writes) {
      if (x !== w && x.resolvedSeq !== undefined && x.resolvedSeq < w.sentSeq) s.writes.delete(x);
    }
  }

  /** An error reply: `applied` says whether the write may still have been done. */
  failed(key: string, w: Write, applied: boolean): void {
    const s = this.slot(key);
    if (!s.writes.has(w)) return;
    if (applied) {
      w.resolvedSeq = ++this.seq;
      return;
    }
    s.writes.delete(w);
    for (const r of s.reads) r.candidates.delete(w);
  }

  /** Whether some write of the key was acked. */
  known(key: string): boolean {
    return this.slots.get(key)?.acked === true;
  }

  /** Starts a read; undefined when its result cannot be known (no write of it acked yet). */
  read(key: string): Read | undefined {
    const s = this.slots.get(key);
    if (!s?.acked) return undefined;
    const r: Read = { candidates: new Set(s.writes) };
    s.reads.add(r);
    return r;
  }

  /** Ends a read; `observed` is the digest read, undefined when the key was not found. */
  check(key: string, r: Read, observed: string | undefined): Verdict {
    this.slots.get(key)?.reads.delete(r);
    let unknown = false;
    const expected: string[] = [];
    for (const w of r.candidates) {
      if (w.digest === undefined) unknown = true;
      else if (w.digest === observed) return GOOD;
      else expected.push(w.digest);
    }
    // A write whose content was never learned could be what was read.
    if (unknown || expected.length === 0) return UNCHECKED;
    const want = expected.join(' or ');
    return {
      checked: true,
      problem:
        observed === undefined
          ? `${key} not found after a write of it was acknowledged (expected ${want})`
          : `${key} has digest ${observed}, expected ${want}`,
    };
  }

  /** Ends a read without a result (error, timeout). */
  forget(key: string, r: Read): void {
    this.slots.get(key)?.reads.delete(r);
  }

  private slot(key: string): Slot {
    let s = this.slots.get(key);
    if (!s) {
      s = { writes: new Set(), acked: false, reads: new Set() };
      this.slots.set(key, s);
    }
    return s;
  }
}
