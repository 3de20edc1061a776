import { SerialBusyMeter } from './busy.ts';

export interface DiskTimingConfig {
  iops: number;
  bandwidthMBps: number;
  latencyMs: number;
  queueDepth: number;
  writeCacheMiB: number;
}

export type DiskOpKind = 'read' | 'write' | 'flush';

/**
 * Service times of one drive. The media is one server: each operation occupies it for
 * max(1/IOPS, bytes/bandwidth), so throughput is bounded by both figures. On top comes a
 * fixed access latency that overlaps between operations (what a queue depth hides), so at
 * queue depth 1 an operation takes max(latency, occupancy). Writes that fit the volatile
 * cache cost only the transfer; a flush destages the dirty bytes to the media.
 */
export class DiskTiming {
  readonly capacity: number;
  private readonly opMs: number;
  private readonly bytesPerMs: number;
  private readonly pipelineMs: number;
  private readonly cacheBytes: number;
  private mediaFreeAt = 0;
  private inFlightOps = 0;
  private dirty = 0;
  readonly meter: SerialBusyMeter;
  ops = 0;
  bytes = 0;

  constructor(cfg: DiskTimingConfig, now = 0) {
    this.capacity = cfg.queueDepth;
    this.opMs = 1000 / cfg.iops;
    this.bytesPerMs = (cfg.bandwidthMBps * 1e6) / 1000;
    this.pipelineMs = Math.max(0, cfg.latencyMs - this.opMs);
    this.cacheBytes = cfg.writeCacheMiB * 1024 * 1024;
    this.meter = new SerialBusyMeter(now);
  }

  get inFlight(): number {
    return this.inFlightOps;
  }

  get dirtyBytes(): number {
    return this.dirty;
  }

  /** Media occupancy of one transfer of `bytes`. */
  occupancyMs(bytes: number): number {
    return Math.max(this.opMs, bytes / this.bytesPerMs);
  }

  /** Admits one operation; undefined when the queue depth is full. */
  start(kind: DiskOpKind, bytes: number, now: number): { serviceMs: number; doneAt: number } | undefined {
    if (this.inFlightOps >= this.capacity) return undefined;
    this.inFlightOps++;
    this.ops++;
    this.bytes += bytes;
    let occupancy: number;
    let tail = this.pipelineMs;
    if (kind === 'write' && this.dirty + bytes <= this.cacheBytes) {
      // Lands in the volatile cache: only the interface transfer, no media access.
      this.dirty += bytes;
      occupancy = bytes / this.bytesPerMs;
      tail = 0;
    } else if (kind === 'flush') {
      occupancy = this.dirty / this.bytesPerMs + this.opMs;
      this.dirty = 0;
    } else {
      occupancy = this.occupancyMs(bytes);
    }
    const begin = Math.max(now, this.mediaFreeAt);
    this.mediaFreeAt = begin + occupancy;
    this.meter.addInterval(begin, this.mediaFreeAt);
    const doneAt = this.mediaFreeAt + tail;
    return { serviceMs: doneAt - now, doneAt };
  }

  finish(): void {
    if (this.inFlightOps === 0) throw new Error('no disk operation in flight');
    this.inFlightOps--;
  }

  /** A power cut empties the volatile cache. */
  dropCache(): void {
    this.dirty = 0;
  }
}
