import type { IngressReply, IngressRequest } from '@vmsim/shared';

export interface ProbeRecord {
  vm: string;
  sentAt: number;
  doneAt: number;
  ok: boolean;
  code?: string | undefined;
}

/**
 * Sends a request to each VM every `everyMs` without waiting for the previous one (an open
 * loop, so one request stuck in a fault does not hide when the VM serves again) and records
 * what came back: a client's view of whether a VM serves.
 */
export class Prober {
  readonly records: ProbeRecord[] = [];
  private readonly timer: NodeJS.Timeout;
  private readonly pending = new Set<Promise<void>>();

  constructor(
    send: (vm: string, req: IngressRequest) => Promise<IngressReply>,
    vms: string[],
    request: IngressRequest,
    everyMs: number,
  ) {
    this.timer = setInterval(() => {
      for (const vm of vms) {
        const sentAt = Date.now();
        const p = send(vm, request).then((r) => {
          const rec: ProbeRecord = { vm, sentAt, doneAt: Date.now(), ok: r.ok };
          if (!r.ok) rec.code = r.code;
          this.records.push(rec);
          this.pending.delete(p);
        });
        this.pending.add(p);
      }
    }, everyMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all(this.pending);
  }

  /** Successes of `vm` among requests sent after `t`. */
  successesSince(vm: string, t: number): number {
    return this.records.filter((r) => r.vm === vm && r.sentAt >= t && r.ok).length;
  }

  failuresSince(vm: string, t: number): ProbeRecord[] {
    return this.records.filter((r) => r.vm === vm && r.sentAt >= t && !r.ok);
  }
}

/**
 * When `vm` served again after a fault injected at `t0`: the reply time of the first success
 * after which every request sent later succeeded too (so a request that was in flight when
 * the fault hit, and failed late, still counts as the outage). `undefined` if it never did.
 */
export function recoveredAt(records: ProbeRecord[], vm: string, t0: number): number | undefined {
  const mine = records.filter((r) => r.vm === vm && r.doneAt >= t0).sort((a, b) => a.sentAt - b.sentAt);
  let candidate: ProbeRecord | undefined;
  for (const r of mine) {
    if (!r.ok) candidate = undefined;
    else candidate ??= r;
  }
  return candidate === undefined ? undefined : Math.max(t0, candidate.doneAt);
}
