import { SerialBusyMeter } from './busy.ts';

export interface NicLinkConfig {
  gbps: number;
  latencyMs: number;
  ring: number;
}

/**
 * One direction of a physical NIC: frames are serialized onto the wire one after another
 * at line rate, then arrive after the link latency. The ring bounds frames in flight.
 */
export class NicLink {
  readonly capacity: number;
  private readonly bytesPerMs: number;
  private readonly latencyMs: number;
  private wireFreeAt = 0;
  private inFlightFrames = 0;
  readonly meter: SerialBusyMeter;
  ops = 0;
  bytes = 0;

  constructor(cfg: NicLinkConfig, now = 0) {
    this.capacity = cfg.ring;
    this.bytesPerMs = (cfg.gbps * 1e9) / 8 / 1000;
    this.latencyMs = cfg.latencyMs;
    this.meter = new SerialBusyMeter(now);
  }

  get inFlight(): number {
    return this.inFlightFrames;
  }

  start(bytes: number, now: number): { serviceMs: number; doneAt: number } | undefined {
    if (this.inFlightFrames >= this.capacity) return undefined;
    this.inFlightFrames++;
    this.ops++;
    this.bytes += bytes;
    const begin = Math.max(now, this.wireFreeAt);
    this.wireFreeAt = begin + bytes / this.bytesPerMs;
    this.meter.addInterval(begin, this.wireFreeAt);
    const doneAt = this.wireFreeAt + this.latencyMs;
    return { serviceMs: doneAt - now, doneAt };
  }

  finish(): void {
    if (this.inFlightFrames === 0) throw new Error('no frame in flight');
    this.inFlightFrames--;
  }
}
