import { VmEvent, anyVmEventSubject, decode, namespace, type NatsConnection, type VmState } from '@vmsim/shared';

/** Records every VM event of a host, so tests can wait for a transition instead of sleeping. */
export class EventLog {
  readonly events: VmEvent[] = [];
  private readonly waiters: { pred: (e: VmEvent) => boolean; resolve: (e: VmEvent) => void }[] = [];

  constructor(nc: NatsConnection, ns: string, host: string) {
    nc.subscribe(anyVmEventSubject(namespace(ns), host), {
      callback: (_err, m) => {
        const e = decode(m.data, VmEvent, 'VM event');
        this.events.push(e);
        for (const w of [...this.waiters]) {
          if (w.pred(e)) {
            this.waiters.splice(this.waiters.indexOf(w), 1);
            w.resolve(e);
          }
        }
      },
    });
  }

  /** Resolves with the first event (already seen or future) that matches. */
  waitFor(vm: string, to: VmState | null, timeoutMs: number): Promise<VmEvent> {
    const pred = (e: VmEvent) => e.vm === vm && e.to === to && (e.kind ?? 'state') === 'state';
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `no event ${vm} → ${to} within ${timeoutMs} ms; saw ${JSON.stringify(this.events.filter((e) => e.vm === vm))}`,
            ),
          ),
        timeoutMs,
      );
      this.waiters.push({
        pred,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      });
    });
  }
}
